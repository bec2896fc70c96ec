"""The celery CLI on the jobsys app, as an operator uses it: ``status`` lists
the worker, ``inspect active`` our running chunk by job, ``events --dump`` (like
Flower) shows each task as ``job=<id> step=<id> chunk=<n> items=a-b`` rather
than item blobs, and ``control terminate`` of a chunk cancels its job."""

from __future__ import annotations

import time

import pytest

from tests.support.live import CELERY, LiveStack, run_in, wait_until

pytestmark = pytest.mark.integration


def slow(x: int) -> int:
    # far longer than the CLI round trips take on a loaded machine (at 10 s a
    # chunk once finished before the terminate came); the cancel ends them all
    time.sleep(120)
    return x


def celery(stack: LiveStack, *args: str) -> str:
    done = run_in(stack, *CELERY, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


# Celery's own CLI talks to the broker and the workers, not the database.
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_status_inspect_events_and_terminate(stack: LiveStack) -> None:
    events = stack.spawn(
        f"events-{stack.name}",
        [*CELERY, "events", "--dump"],
    )
    assert f"it-{stack.name}@" in celery(stack, "status")
    with stack.client() as c:
        job = c.map(slow, [1, 2, 3, 4], chunk_size=1)
        wait_until(lambda: any(t["state"] == "running" for t in job.tasks()), 30, "a chunk to run")
        active = celery(stack, "inspect", "active")  # args as sent: job id, step id, chunk
        assert "jobsys.run_function_chunk" in active and job.id in active
        running = next(t for t in job.tasks() if t["state"] == "running")
        celery(stack, "control", "terminate", "SIGTERM", running["id"])
        done = job.wait(timeout=60)
    assert done.status == "cancelled"
    assert done.error == f"cancelled: task {running['id']} was terminated in Celery"
    wait_until(lambda: f"job={job.id}" in stack.log(f"events-{stack.name}"), 30, "events")
    events.terminate()
    events.wait(timeout=15)
    del stack.processes[f"events-{stack.name}"]
