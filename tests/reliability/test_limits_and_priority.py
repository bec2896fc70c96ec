"""Limits a user can see take effect (issue 8, guarantee 7): a chunk's soft
time limit fails the running item and skips the rest, its hard limit kills
the chunk and ends the job with that reason; a more urgent job's waiting
tasks run before a less urgent one's; a queue's worker concurrency caps how
many of its tasks run at once. (Docker retries with exponential backoff and
jitter are drilled in tests/docker/test_docker_steps.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from jobsys import ItemsFailed
from tests.support.drills import Drill, drill_stack
from tests.support.live import wait_until
from tests.support.services import BUSYBOX_IMAGE, require_docker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    yield from drill_stack(tmp_path_factory.mktemp("limits"), "limits")


def use_workers(drill: Drill, **workers: tuple[str, int]) -> None:
    """Stop every worker of the stack, then start these (name: (queues, slots))."""
    for process in [p for p in drill.stack.processes if p not in ("web", "beat")]:
        drill.kill(process)
    for name, (queues, slots) in workers.items():
        drill.spawn_worker(name, queues=queues, concurrency=slots)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_soft_and_hard_time_limits(drill: Drill) -> None:
    def nap(seconds: float) -> float:
        """Travels by value: by reference, a fresh sandbox would first import this
        test module (and pytest), inside the 1 s soft limit."""
        import time

        time.sleep(seconds)
        return seconds

    with drill.stack.client() as c:
        soft = c.map(nap, [0.1, 0.1, 30, 0.1], chunk_size=4, soft_time_limit_s=1, time_limit_s=20)
        soft.wait(timeout=30)
        assert soft.status == "failed"
        outcomes = list(soft.outcomes())
        assert [ok for ok, _ in outcomes] == [True, True, False, False]
        assert outcomes[2][1]["type"] == "SoftTimeLimitExceeded"
        assert "not run" in outcomes[3][1]["message"]

        started = time.monotonic()
        hard = c.map(nap, [0.1, 30], chunk_size=2, time_limit_s=2).wait(timeout=40)
        took = time.monotonic() - started
        assert hard.status == "failed" and "hard time limit" in (hard.error or ""), hard.error
        assert took < 15, f"the job ended {took:.1f} s after its submit"
        with pytest.raises(ItemsFailed, match="hard time limit"):
            hard.results()


def test_a_more_urgent_job_goes_first(drill: Drill) -> None:
    use_workers(drill, solo=("python", 1))
    with drill.stack.client() as c:
        blocker = c.map(nap, [2], name="blocker")
        wait_until(lambda: blocker.refresh().status == "running", 30, "the blocker to run")
        low = [c.map(nap, [0.05], name=f"low-{i}", priority=0) for i in range(4)]
        urgent = c.map(nap, [0.05], name="urgent", priority=9)
        for job in [blocker, *low, urgent]:
            job.wait(timeout=60)
            assert job.status == "completed", job.error
        first_start = {
            j.data["name"]: min(datetime.fromisoformat(t["started_at"]) for t in j.tasks())
            for j in [*low, urgent]
        }
    later = [name for name, at in first_start.items() if at < first_start["urgent"]]
    assert later == [], f"submitted earlier at a lower priority but ran first: {later}"


def test_a_queue_runs_at_most_its_concurrency(drill: Drill) -> None:
    require_docker()
    use_workers(drill, docker2=("docker", 2), python1=("python", 1))
    with drill.stack.client() as c:
        jobs = [c.run_docker(BUSYBOX_IMAGE, ["sleep", "1"], name=f"d{i}") for i in range(5)]
        quick = c.map(abs, [-1, -2]).wait(timeout=60)
        assert quick.status == "completed"  # the python queue is not held up by docker's
        spans = []
        for job in jobs:
            job.wait(timeout=90)
            assert job.status == "completed", job.error
            task = job.tasks()[0]
            spans.append(
                (
                    datetime.fromisoformat(task["started_at"]),
                    datetime.fromisoformat(task["finished_at"]),
                )
            )
    most = max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)
    assert most == 2, f"at most {most} Docker tasks ran at once, the queue's worker has 2 slots"
