"""Cancelling through the service layer and the API, on SQLite and a recording dispatcher."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, StateError
from jobsys.states import JobStatus
from tests.support.auth import bearer_of, csrf_of
from tests.support.specs import docker_spec, function_spec, two_docker_steps
from webui import create_app


def test_cancel_a_queued_job(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, two_docker_steps())
    done = service.cancel_job(ctx, Principal("op", "operator"), job.id)
    assert done.status == "cancelled" and done.error == "cancelled by op"
    assert done.finished_at is not None
    assert [s.status for s in done.steps] == ["cancelled", "cancelled"]
    assert service.is_cancelled(ctx, job.id) and job.id in dispatcher.cancelled
    # its published task is dropped when a worker picks it up
    assert service.start_task(ctx, dispatcher.published[0].task_id, "w") is None
    assert service.sweep_outbox(ctx) == 0


def test_cancel_revokes_live_chunks(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3, 4], chunk_size=1))
    chunks = dispatcher.published[0].chunks
    service.start_task(ctx, chunks[0].task_id, "w")
    service.finish_task(ctx, chunks[0].task_id, ok=True, results=[{"ok": True, "value": 1}])
    service.start_task(ctx, chunks[1].task_id, "w")
    service.cancel_job(ctx, developer, job.id)
    assert sorted(dispatcher.revoked) == sorted(c.task_id for c in chunks[1:])
    states = [t.state for t in service.job_tasks(ctx, developer, job.id)]
    assert states == ["completed", "cancelled", "cancelled", "cancelled"]
    # the chunk that was running still gets its last report in, once
    late = [service.LogRecord(line="finishing up")]
    assert service.finish_task(ctx, chunks[1].task_id, ok=True, logs=late)
    assert not service.finish_task(ctx, chunks[1].task_id, ok=True, logs=late)
    assert [e.line for e in service.job_logs(ctx, developer, job.id)] == ["finishing up"]
    assert service.job_tasks(ctx, developer, job.id)[1].state == "cancelled"
    # a late gather cannot complete a cancelled step or revive the job
    service.gather_function_step(ctx, dispatcher.published[0].step_id)
    assert service.get_job(ctx, developer, job.id).status == "cancelled"


def test_cancelling_an_ended_job_is_409_and_changes_nothing(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    assert service.start_task(ctx, dispatcher.published[0].task_id, "w") is not None
    assert service.finish_job(ctx, job.id, JobStatus.COMPLETED)
    with pytest.raises(StateError, match="is completed"):
        service.cancel_job(ctx, developer, job.id)
    after = service.get_job(ctx, developer, job.id)
    assert after.status == "completed" and after.error is None
    with pytest.raises(NotFoundError):
        service.cancel_job(ctx, developer, "nope")


def test_viewers_cannot_cancel(ctx: Context, developer: Principal, viewer: Principal) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    with pytest.raises(PermissionDenied, match="'cancel' right"):
        service.cancel_job(ctx, viewer, job.id)
    assert service.get_job(ctx, viewer, job.id).status == "queued"


def test_cancel_holds_when_the_broker_is_down(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    dispatcher.down = True
    assert service.cancel_job(ctx, developer, job.id).status == "cancelled"
    assert service.is_cancelled(ctx, job.id)  # from the database


def test_cancel_over_the_api_and_the_page(ctx: Context, dispatcher: MemoryDispatcher) -> None:
    client: FlaskClient = create_app(context=ctx).test_client()
    token = service.create_token(ctx, SYSTEM, name="op", role="developer").token
    headers = bearer_of(token)
    first = client.post("/api/jobs", json=docker_spec(), headers=headers).json["id"]
    r = client.post(f"/api/jobs/{first}/cancel", headers=headers)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    again = client.post(f"/api/jobs/{first}/cancel", headers=headers)
    assert again.status_code == 409 and again.json["error"] == "StateError"

    second = client.post("/api/jobs", json=docker_spec(), headers=headers).json["id"]
    page = client.get("/login").get_data(as_text=True)
    csrf = csrf_of(page)
    client.post("/login", data={"token": token, "csrf_token": csrf})
    listing = client.get("/jobs").get_data(as_text=True)
    assert f"/jobs/{second}/cancel" in listing and f"/jobs/{first}/cancel" not in listing
    csrf = csrf_of(listing)  # new session
    r = client.post(f"/jobs/{second}/cancel", data={"csrf_token": csrf, "next": "/jobs"})
    assert r.status_code == 302 and r.headers["Location"] == "/jobs"
    assert service.get_job(ctx, SYSTEM, second).status == "cancelled"
