"""Drill: a failed or lost member of a function step's chord never hangs its job
(celery/celery#4207, #3317: a chord whose header task fails, is revoked or is
lost never calls its callback). The step ends by its failure policy, and the
items of the chunk that never reported carry the reason as their error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from jobsys.service.recovery import TASK_LOST
from jobsys.states import JobStatus
from tests.support.drills import DRILL_SETTINGS, Drill, drill_stack
from tests.support.live import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GIVE_UP_AFTER = DRILL_SETTINGS["task_max_deliveries"]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    # Unsandboxed: these drills need a chunk that kills the worker process it runs
    # in. In the sandbox a chunk kills only its own process (its items then fail,
    # once: tests/integration/test_sandboxed_jobs.py), and a worker's death comes
    # from outside (an OOM kill of the pool process), as test_worker_crash drills.
    for drill_ in drill_stack(tmp_path_factory.mktemp("chord"), "chord", sandbox="off"):
        drill_.spawn_beat()  # the lost-task sweep, at its drill pace
        yield drill_


@pytest.fixture(autouse=True)
def _two_workers(drill: Drill) -> None:
    drill.ensure_workers(2)


def test_a_chunk_that_kills_its_worker_every_time_is_given_up(drill: Drill) -> None:
    def poison(x: int) -> int:
        import os
        import signal

        if x == 5:  # an OOM kill, a segfault in a C extension
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    began = time.monotonic()
    with drill.stack.client() as c:
        job = c.map(poison, range(8), chunk_size=2).wait(timeout=90)
        took = time.monotonic() - began
        values = job.results(errors="return")
    runs = drill.tasks(job.id)
    print(
        f"\npoison chunk: job {job.status} after {took:.1f} s; deliveries of the chunk "
        f"{runs[2].attempt}; error: {job.error}"
    )
    assert job.status == JobStatus.FAILED.value
    assert runs[2].attempt == GIVE_UP_AFTER + 1 and runs[2].state == "failed"
    assert f"gave up after {GIVE_UP_AFTER} deliveries" in job.error
    assert values[:4] == [0, 1, 2, 3] and values[6:] == [6, 7]
    assert [v["type"] for v in values[4:6]] == [TASK_LOST, TASK_LOST]
    step = drill.step(job.id)
    assert (step.done_tasks, step.total_tasks, step.failed_items) == (4, 4, 2)


def test_a_chord_that_never_calls_back_is_gathered_by_the_sweep(drill: Drill) -> None:
    """The chord's counters vanish from Redis (evicted under maxmemory, or a
    failover), so its callback can never fire; the step ends all the same."""

    def slow(x: int) -> int:
        import time

        time.sleep(1.5)
        return -x

    client = redis.Redis.from_url(drill.redis.url)
    with drill.stack.client() as c:
        job = c.map(slow, range(4), chunk_size=1)
        wait_until(lambda: client.keys("celery-taskset-meta-*"), 30, "the chord's counters")
        evicted = client.delete(*client.keys("celery-taskset-meta-*"))
        wait_until(
            lambda: all(t.state == "completed" for t in drill.tasks(job.id)),
            30,
            "every chunk ended",
        )
        all_ended = time.monotonic()
        job.wait(timeout=30)
        settled_s = time.monotonic() - all_ended
        assert job.status == JobStatus.COMPLETED.value, job.error
        assert job.results() == [0, -1, -2, -3]
    print(f"\nno chord callback ({evicted} keys evicted): step gathered {settled_s:.1f} s later")
    assert settled_s < DRILL_SETTINGS["lost_task_grace_s"] + 5


def test_a_chunk_lost_with_its_worker_fails_the_job_with_the_reason(drill: Drill) -> None:
    """The worker dies and its message is gone too (dropped as a duplicate,
    lost in a failover): nothing will redeliver the chunk."""

    def slow(x: int) -> int:
        import time

        time.sleep(2)
        return x

    client = redis.Redis.from_url(drill.redis.url)
    with drill.stack.client() as c:
        job = c.map(slow, range(4), chunk_size=1)
        wait_until(
            lambda: [t for t in drill.tasks(job.id) if t.state == "running"], 30, "chunks running"
        )
        victim = next(t for t in drill.tasks(job.id) if t.state == "running")
        killed_at = drill.kill(drill.process_of(victim.worker or "?"))
        for tag, raw in client.hgetall("unacked").items():
            if json.loads(raw)[0]["headers"]["id"] == victim.id:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
        job.wait(timeout=60)
        ended_s = time.monotonic() - killed_at
        values = job.results(errors="return")
    print(f"\nlost chunk: job {job.status} {ended_s:.1f} s after the kill; error: {job.error}")
    assert job.status == JobStatus.FAILED.value
    assert f"lost while running on {victim.worker}" in job.error
    lost = [i for i, v in enumerate(values) if isinstance(v, dict) and v["type"] == TASK_LOST]
    assert lost == [victim.item_start]
    assert [v for i, v in enumerate(values) if i not in lost] == [
        i for i in range(4) if i not in lost
    ]
