"""Drill: ``kill -9`` of a worker in the middle of a Docker step and of a
function chunk. The work is redelivered to the other worker once the visibility
timeout passes, the job completes, each item's result is recorded once, and
the killed run's container is removed before the new run starts its own."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsys.states import TaskState
from tests.support.docker import finished, lines, step, submit
from tests.support.drills import Drill, containers_created, containers_of, drill_stack
from tests.support.live import wait_until
from tests.support.services import require_docker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, sandbox_share: Path) -> Iterator[Drill]:
    # Jobs leave their marks in the shared folder, which sandboxed code may write.
    shared = (str(sandbox_share),)
    yield from drill_stack(tmp_path_factory.mktemp("crash"), "crash", sandbox_mounts=shared)


@pytest.fixture(autouse=True)
def _two_workers(drill: Drill) -> None:
    drill.ensure_workers(2)  # one to kill, one to take over


def _running_on(drill: Drill, job_id: str) -> str | None:
    runs = [t for t in drill.tasks(job_id) if t.state == TaskState.RUNNING.value]
    return runs[0].worker if runs else None


@pytest.mark.docker
def test_kill9_mid_docker_step(drill: Drill) -> None:
    require_docker()
    began = time.time()
    job_id = submit(drill.stack, step("echo start; sleep 4; echo done", timeout_s=60))
    node = wait_until(lambda: _running_on(drill, job_id), 30, "the step running")
    wait_until(lambda: containers_of(job_id), 30, "its container")
    time.sleep(0.5)  # well inside the container's run
    victim = drill.process_of(node)
    killed_at = drill.kill(victim)

    def redelivered() -> bool:
        runs = drill.tasks(job_id)
        return runs[0].attempt == 2 and runs[0].state == TaskState.RUNNING.value

    wait_until(redelivered, 30, "the step redelivered")
    redelivery_s = time.monotonic() - killed_at
    # The dead run's container went before the new run started its own.
    assert len(containers_of(job_id)) <= 1
    job = finished(drill.stack, job_id)
    assert job["status"] == "completed", job["error"]
    total_s = time.monotonic() - killed_at
    (run,) = drill.tasks(job_id)
    left = containers_of(job_id)
    created = containers_created(job_id, began)
    out = lines(drill.stack, job_id)
    print(
        f"\ndocker kill -9: redelivered after {redelivery_s:.1f} s, job done "
        f"{total_s:.1f} s after the kill; deliveries {run.attempt}, containers created "
        f"{created}, left {len(left)}; step attempts {drill.step(job_id).attempts}"
    )
    assert run.state == "completed" and run.attempt == 2 and run.worker != node
    assert created == 2 and left == []
    assert any(
        f"delivery 2: the run on {node} was lost with its worker; removed its container" in line
        for line in out
    ), out
    assert out.count("done") == 1 and out[-1] == "done"


def test_kill9_mid_function_chunk(drill: Drill, shared_path: Path) -> None:
    marks = shared_path / "marks"
    marks.mkdir()
    marks.chmod(0o777)  # written by the jobs' code, as the sandbox's user
    where = str(marks)

    def slow_square(x: int) -> int:
        import os
        import time
        import uuid

        open(os.path.join(where, f"{x}.{uuid.uuid4().hex}"), "w").close()
        time.sleep(0.7)
        return x * x

    with drill.stack.client() as c:
        job = c.map(slow_square, range(12), chunk_size=3)
        node = wait_until(lambda: _running_on(drill, job.id), 30, "a chunk running")
        time.sleep(0.3)  # inside its first item
        victim = drill.process_of(node)
        doomed = {t.id for t in drill.tasks(job.id) if t.worker == node and t.state == "running"}
        killed_at = drill.kill(victim)
        job.wait(timeout=60)
        total_s = time.monotonic() - killed_at
        assert job.status == "completed", job.error
        assert job.results() == [x * x for x in range(12)]
    runs = drill.tasks(job.id)
    # Each item's result is recorded exactly once: the chunks' ranges tile the
    # items, each with as many results as items, and the step counted 4 tasks.
    assert [(r.item_start, r.item_stop) for r in runs] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert all(len(r.results or []) == r.item_stop - r.item_start for r in runs)
    step = drill.step(job.id)
    assert (step.done_tasks, step.total_tasks, step.failed_items) == (4, 4, 0)
    redelivered = [r for r in runs if r.id in doomed]
    assert redelivered and all(r.attempt == 2 and r.worker != node for r in redelivered), [
        (r.item_start, r.attempt, r.worker, node) for r in runs
    ]
    ran = Counter(int(p.name.split(".")[0]) for p in marks.iterdir())
    print(
        f"\nchunk kill -9: {len(doomed)} chunk(s) on {victim} redelivered; job done "
        f"{total_s:.1f} s after the kill; results rows per item: 1; executions per item "
        f"(side effects are at least once): {dict(sorted(ran.items()))}"
    )
    assert set(ran) == set(range(12)) and max(ran.values()) <= 2
