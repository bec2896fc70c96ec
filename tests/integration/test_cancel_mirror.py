"""The README's promise: a cancel is stored in the database and mirrored in
Redis, so a worker started after the cancel drops the job's queued tasks.

Celery's own revoke cannot do this: it is broadcast to the workers alive at
the time and kept in their memory only, and here no worker is alive. The
worker that starts later must find the cancel itself. Today it finds it in the
database (``start_task`` refuses a task of an ended job, and the cancel moved
the queued tasks to ``cancelled``); the Redis flag is what ``is_cancelled``
reads first, which Docker steps poll while they run. Both are checked here.

A private stack (its own redis-server and SQLite database, no web app) so no
other worker can consume the queue while the test wants it unconsumed. Each
item is ``os:mkdir`` of a marker folder: an item that runs leaves its folder.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.canvas import PYTHON_QUEUE
from jobsys.broker.dispatch import cancel_key
from jobsys.config import Settings
from jobsys.runtime import build_context
from tests.support.live import SECRET, LiveStack, RedisServer, free_port, wait_until

pytestmark = pytest.mark.integration

ITEMS = 4


@pytest.fixture
def idle_stack(tmp_path: Path, sandbox_share: Path) -> Iterator[LiveStack]:
    """Redis and a database, and no worker until the test starts one; its
    sandboxed jobs may write to ``sandbox_share``."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    settings = Settings.from_env(
        {},
        redis_url=server.url,
        database_url=f"sqlite:///{tmp_path / 'jobsys.db'}",
        secret_key=SECRET,
        data_dir=str(tmp_path),
        sandbox_mounts=(str(sandbox_share),),
    )
    stack = LiveStack(
        name="mirror", settings=settings, ctx=build_context(settings), url="", log_dir=tmp_path
    )
    try:
        yield stack
    finally:
        for proc in stack.processes.values():  # nothing left to finish: no warm shutdown
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        server.stop()


def start_worker(stack: LiveStack) -> None:
    celery = [sys.executable, "-m", "celery", "-A", "jobsys.celery_app"]
    stack.spawn("worker", [*celery, "worker", "-Q", PYTHON_QUEUE, "-c", "1", "-n", "it-mirror@%h"])
    wait_until(
        lambda: any(w.name.startswith("it-mirror@") for w in stack.ctx.dispatcher.workers()),
        60,
        "the worker",
    )


def mkdir_job(stack: LiveStack, folder: Path, name: str) -> str:
    items = [str(folder / f"{name}-{i}") for i in range(ITEMS)]
    spec = {
        "name": name,
        "steps": [{"kind": "function", "function": "os:mkdir", "items": items, "chunk_size": 1}],
    }
    return service.submit_job(stack.ctx, SYSTEM, spec).id


def queued(stack: LiveStack) -> set[str]:
    found = stack.ctx.dispatcher.inflight.queued_task_ids(PYTHON_QUEUE)
    assert found is not None  # a handful of messages: never too big to read
    return found


def ran(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f"{name}-*"))


def test_a_worker_started_after_the_cancel_drops_the_jobs_queued_tasks(
    idle_stack: LiveStack, shared_path: Path
) -> None:
    stack = idle_stack
    markers = shared_path / "markers"
    markers.mkdir()
    markers.chmod(0o777)  # the jobs' code makes its folders here, as the sandbox's user
    # Both wait in the queue, the cancelled one first; the other is the control:
    # the same setup without the cancel, which the new worker does run.
    cancelled = mkdir_job(stack, markers, "cancelled")
    control = mkdir_job(stack, markers, "control")
    task_ids = {t.id for t in service.job_tasks(stack.ctx, SYSTEM, cancelled)}
    inflight = stack.ctx.dispatcher.inflight
    assert task_ids <= queued(stack)

    assert service.cancel_job(stack.ctx, SYSTEM, cancelled).status == "cancelled"
    # The mirror: a flag in Redis beside the database row, for the job's lifetime.
    flag_ttl = inflight.client.ttl(cancel_key(cancelled))
    assert flag_ttl > 24 * 3600
    assert task_ids <= queued(stack)  # still queued

    start_worker(stack)
    wait_until(
        lambda: service.get_job(stack.ctx, SYSTEM, control).status == "completed",
        60,
        "the control job to run on the new worker",
    )
    assert ran(markers, "control") == [f"control-{i}" for i in range(ITEMS)]
    # Every message of the cancelled job was taken and acknowledged, not left behind.
    wait_until(
        lambda: not task_ids & (queued(stack) | inflight.delivered_task_ids()),
        30,
        "the worker to take the cancelled job's messages",
    )
    assert ran(markers, "cancelled") == []
    job = service.get_job(stack.ctx, SYSTEM, cancelled)
    assert job.status == "cancelled"
    assert [s.status for s in job.steps] == ["cancelled"]
    runs = service.job_tasks(stack.ctx, SYSTEM, cancelled)
    assert {(t.state, t.started_at, t.worker) for t in runs} == {("cancelled", None, None)}
