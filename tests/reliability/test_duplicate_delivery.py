"""Drill: a step that runs longer than the broker's visibility timeout is never
started twice while its first run is alive.

Each run keeps its own message hidden (so Redis does not hand it to the other
worker at all) and holds the task's execution lease (so a copy that arrives
anyway is dropped: acknowledged, not run, not counted in a chord). A delivery
after the run died takes over the lease.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobsys.broker.canvas import DOCKER_QUEUE, PYTHON_QUEUE, RUN_DOCKER_STEP, RUN_FUNCTION_CHUNK
from jobsys.broker.inflight import lease_key
from jobsys.service.leases import Holder
from tests.support.docker import finished, step, submit
from tests.support.drills import DRILL_SETTINGS, Drill, containers_created, drill_stack
from tests.support.live import wait_until
from tests.support.services import require_docker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VISIBILITY_S = DRILL_SETTINGS["broker_visibility_timeout_s"]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, sandbox_share: Path) -> Iterator[Drill]:
    # Jobs leave their marks in the shared folder, which sandboxed code may write.
    shared = (str(sandbox_share),)
    yield from drill_stack(tmp_path_factory.mktemp("dup"), "dup", sandbox_mounts=shared)


@pytest.fixture(autouse=True)
def _two_workers(drill: Drill) -> None:
    drill.ensure_workers(2)  # an idle one, ready to take a redelivered message


def received(drill: Drill, task_id: str) -> int:
    """How many times any worker of the drill received this task's message."""
    return drill.worker_logs().count(f"[{task_id}] received")


def _running(drill: Drill, job_id: str) -> bool:
    return any(t.state == "running" for t in drill.tasks(job_id))


@pytest.mark.docker
def test_steps_longer_than_the_visibility_timeout_run_once(drill: Drill, shared_path: Path) -> None:
    require_docker()
    marks = shared_path / "marks"
    marks.mkdir()
    marks.chmod(0o777)  # written by the jobs' code, as the sandbox's user
    where = str(marks)

    def long_item(x: int) -> int:
        import os
        import time
        import uuid

        open(os.path.join(where, uuid.uuid4().hex), "w").close()
        time.sleep(10)
        return x

    began = time.time()
    docker_job = submit(drill.stack, step("echo start; sleep 10; echo done", timeout_s=60))
    with drill.stack.client() as c:
        fn_job = c.map(long_item, [7], chunk_size=1)
        assert fn_job.wait(timeout=60).status == "completed" and fn_job.results() == [7]
    assert finished(drill.stack, docker_job)["status"] == "completed"
    ran_s = time.time() - began
    (docker_run,) = drill.tasks(docker_job)
    (chunk_run,) = drill.tasks(fn_job.id)
    deliveries = (received(drill, docker_run.id), received(drill, chunk_run.id))
    created = containers_created(docker_job, began)
    print(
        f"\nlong steps: ran {ran_s:.1f} s against a {VISIBILITY_S:g} s visibility timeout; "
        f"deliveries docker/chunk {deliveries}, containers created {created}, "
        f"function runs {len(list(marks.iterdir()))}"
    )
    assert ran_s > 3 * VISIBILITY_S
    assert deliveries == (1, 1) and docker_run.attempt == chunk_run.attempt == 1
    assert created == 1 and len(list(marks.iterdir())) == 1


@pytest.mark.docker
def test_a_duplicate_delivery_is_dropped_while_the_run_lives(drill: Drill) -> None:
    require_docker()
    began = time.time()
    docker_job = submit(drill.stack, step("sleep 5; echo done", timeout_s=60))
    with drill.stack.http() as http:
        r = http.post(
            "/api/jobs",
            json={"steps": [{"kind": "function", "function": "time:sleep", "items": [5]}]},
        )
        assert r.status_code == 202, r.text
        fn_job = r.json()["id"]
    wait_until(lambda: _running(drill, docker_job) and _running(drill, fn_job), 30, "both running")
    (docker_run,) = drill.tasks(docker_job)
    (chunk_run,) = drill.tasks(fn_job)
    # The same messages again, as a broker redelivering them would send them.
    app = drill.stack.ctx.dispatcher.app  # type: ignore[attr-defined]
    app.send_task(
        RUN_DOCKER_STEP,
        args=(docker_job, docker_run.step_id),
        task_id=docker_run.id,
        queue=DOCKER_QUEUE,
    )
    app.send_task(
        RUN_FUNCTION_CHUNK,
        args=(fn_job, chunk_run.step_id, 0, 0, [5]),
        task_id=chunk_run.id,
        queue=PYTHON_QUEUE,
    )
    assert finished(drill.stack, docker_job)["status"] == "completed"
    with drill.stack.client() as c:
        fn = c.job(fn_job).wait(timeout=60)
        assert fn.status == "completed" and fn.results() == [None]
    logs = drill.worker_logs()
    dropped = logs.count("duplicate delivery dropped")
    (docker_run,) = drill.tasks(docker_job)
    (chunk_run,) = drill.tasks(fn_job)
    created = containers_created(docker_job, began)
    print(
        f"\nduplicates: deliveries docker/chunk "
        f"{received(drill, docker_run.id)}/{received(drill, chunk_run.id)}, dropped {dropped}, "
        f"runs started {docker_run.attempt}/{chunk_run.attempt}, containers created {created}"
    )
    assert received(drill, docker_run.id) == received(drill, chunk_run.id) == 2
    assert f"task {docker_run.id}: duplicate delivery dropped" in logs
    assert f"task {chunk_run.id}: duplicate delivery dropped" in logs
    assert docker_run.attempt == chunk_run.attempt == 1 and created == 1


def test_a_delivery_after_the_run_died_takes_over(drill: Drill) -> None:
    """Only the pool process running the chunk dies: Celery requeues its message
    at once, while the dead run's lease still has up to 1.5 s to live."""
    with drill.stack.http() as http:
        r = http.post(
            "/api/jobs",
            json={"steps": [{"kind": "function", "function": "time:sleep", "items": [2]}]},
        )
        job_id = r.json()["id"]
    wait_until(lambda: _running(drill, job_id), 30, "the chunk running")
    (run,) = drill.tasks(job_id)
    client = redis.Redis.from_url(drill.redis.url)
    holder = Holder.parse(client.get(lease_key(run.id)).decode())
    assert holder is not None
    os.kill(holder.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def taken_over() -> bool:
        (again,) = drill.tasks(job_id)
        return again.attempt == 2

    wait_until(taken_over, 20, "the chunk restarted")
    takeover_s = time.monotonic() - killed_at
    with drill.stack.client() as c:
        job = c.job(job_id).wait(timeout=60)
    (run,) = drill.tasks(job_id)
    print(f"\npool process killed: the next delivery took over after {takeover_s:.1f} s")
    assert job.status == "completed" and run.attempt == 2
    # soon after the dead run's lease ran out; 1.5 s past the TTL was too tight
    # for a 2-core machine (3.17 s against a 3 s bound failed once in CI)
    assert takeover_s < DRILL_SETTINGS["task_lease_ttl_s"] + 3
