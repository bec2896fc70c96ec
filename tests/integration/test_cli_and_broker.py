"""The CLI against the live stack's database, and the broker refusing pickles."""

from __future__ import annotations

import time

import pytest
from kombu import Connection

from jobsys import Client, PermissionDenied, service
from jobsys.auth import SYSTEM
from jobsys.broker.canvas import RUN_FUNCTION_CHUNK
from jobsys.states import JobStatus
from tests.support.live import JOBSYS, LiveStack, run_in

pytestmark = pytest.mark.integration


def test_token_create_prints_a_working_token(stack: LiveStack) -> None:
    out = run_in(stack, *JOBSYS, "token", "create", "--role", "viewer", "--name", "from-cli")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("jst_")
    with Client(stack.url, token=token) as viewer:
        assert viewer.stats()["broker"] == "ok"
        with pytest.raises(PermissionDenied, match="'submit' right"):
            viewer.run_docker("jobsys/busybox:local", ["true"])
    bad = run_in(stack, *JOBSYS, "token", "create", "--role", "root")
    assert bad.returncode == 2 and "root" in bad.stderr


def test_a_pickle_put_on_the_broker_is_refused(stack: LiveStack) -> None:
    """The broker carries JSON only: a pickled message never reaches our task code."""
    job = stack.unpublished_job(
        {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1]}]}
    )
    task = service.job_tasks(stack.ctx, SYSTEM, job.id)[0]
    with Connection(stack.settings.redis_url) as conn:
        producer = conn.Producer(serializer="pickle")
        producer.publish(
            [[job.id, job.steps[0].id, 0, 0, [1]], {}, {}],
            routing_key="python",
            exchange="",
            serializer="pickle",
            headers={"task": RUN_FUNCTION_CHUNK, "id": task.id, "lang": "py"},
        )
    deadline = time.monotonic() + 10
    while "disallowed" not in stack.log("worker").lower() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "disallowed" in stack.log("worker").lower()
    assert service.job_tasks(stack.ctx, SYSTEM, job.id)[0].state == "pending"
    assert service.get_job(stack.ctx, SYSTEM, job.id).status == "queued"
    service.finish_job(stack.ctx, job.id, JobStatus.CANCELLED)  # leave nothing for the sweep
