"""Drill: Redis restarted mid-job, empty (no persistence), on the port the test
started it on. Workers, beat and the web app reconnect; a step that was running
completes and the next one is published to the new Redis; chunks that were
running complete, though their chord's counters are gone; chunks that waited
in the queue are gone with it, and the lost-task sweep fails them with that
reason. No job stays ``running``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from jobsys.service.recovery import TASK_LOST
from jobsys.states import JobStatus
from tests.support.docker import finished, lines, step, submit
from tests.support.drills import DRILL_SETTINGS, Drill, drill_stack
from tests.support.live import wait_until
from tests.support.services import require_docker

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    require_docker()
    for drill_ in drill_stack(tmp_path_factory.mktemp("restart"), "restart"):
        drill_.spawn_beat()  # the lost-task sweep runs where it runs in production
        yield drill_


def _states(drill: Drill, job_id: str) -> list[str]:
    return [t.state for t in drill.tasks(job_id)]


def test_redis_restarted_mid_job(drill: Drill) -> None:
    stack = drill.stack
    # One slot of the worker's four runs a two-step Docker job ...
    docker_job = submit(stack, step("echo one; sleep 5; echo two"), step("echo after"))
    wait_until(lambda: "running" in _states(drill, docker_job), 30, "the Docker step running")
    # ... three run chunks, and three more chunks wait in the queue.
    sleepy = {"kind": "function", "function": "time:sleep", "items": [3] * 6, "chunk_size": 1}
    with stack.http() as http:
        r = http.post("/api/jobs", json={"name": "sleepy", "steps": [sleepy]})
        assert r.status_code == 202, r.text
        map_job = r.json()["id"]
    wait_until(lambda: _states(drill, map_job).count("running") == 3, 30, "three chunks running")

    drill.redis.stop()
    time.sleep(1.0)
    drill.redis.start()  # empty: queues, unacked messages, chord counters and leases gone
    restarted_at = time.monotonic()

    done = finished(stack, docker_job, timeout=60)
    assert done["status"] == "completed", done["error"]
    assert lines(stack, docker_job) == ["one", "two", "after"]  # step 2 published after
    with stack.client() as c:
        mapped = c.job(map_job).wait(timeout=60)
        settled_s = time.monotonic() - restarted_at
        outcomes = mapped.results(errors="return")
        # The web app reconnected too: a new job goes through it and completes.
        after = c.map(abs, [-1, -2], chunk_size=1).wait(timeout=60)
        assert after.status == "completed" and after.results() == [1, 2]
    lost = [o for o in outcomes if isinstance(o, dict) and o.get("type") == TASK_LOST]
    ran = [o for o in outcomes if o is None]
    print(
        f"\nRedis restart: Docker job completed; map job {mapped.status} "
        f"{settled_s:.1f} s after the restart (grace {DRILL_SETTINGS['lost_task_grace_s']:g} s) "
        f"with {len(ran)} items done, {len(lost)} lost; error: {mapped.error}"
    )
    assert mapped.status == JobStatus.FAILED.value
    assert len(ran) == 3 and len(lost) == 3
    assert "3 of 6 chunks did not complete" in mapped.error
    assert "lost before it started: the broker no longer holds its message" in mapped.error
    assert "Redis restarted" in lost[0]["message"]
    with stack.client("viewer") as c:
        stuck = [j.id for j in c.jobs() if j.status in ("queued", "running")]
    assert stuck == []
