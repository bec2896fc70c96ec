"""A template's ``roles`` narrow who may start its jobs and who may stop
(cancel) them, through the service layer and the API; ``restart`` has its own
test in test_catalog.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from jobsys import service
from jobsys.auth import Principal
from jobsys.context import Context
from jobsys.errors import PermissionDenied
from jobsys.states import JobStatus
from tests.support.auth import bearer
from webui import create_app

ADMIN = Principal("ada", "admin")
OPERATOR = Principal("otto", "operator")
STEPS = "steps: [{kind: docker, image: jobsys/busybox:local, command: [echo, hi]}]\n"


@pytest.fixture
def guarded(ctx: Context, tmp_path: Path) -> Context:
    """Two templates: one only admins may start, one only admins may stop."""
    folder = tmp_path / "catalog"
    for name, roles in [("start-guarded", "{start: [admin]}"), ("stop-guarded", "{stop: [admin]}")]:
        (folder / name).mkdir(parents=True)
        (folder / name / "job.yaml").write_text(f"roles: {roles}\n{STEPS}")
    found = service.reload_catalog(ctx, ADMIN, folder)
    assert {t.name for t in found.templates} == {"start-guarded", "stop-guarded"}
    assert not found.broken
    return ctx


def status_of(ctx: Context, job_id: str) -> str:
    return service.get_job(ctx, ADMIN, job_id).status


def test_start_roles_refuse_an_operator_and_let_an_admin_start(guarded: Context) -> None:
    with pytest.raises(PermissionDenied) as caught:
        service.start_template(guarded, OPERATOR, "start-guarded", {})
    assert caught.value.right == "start"
    assert "template 'start-guarded' lets only the roles admin start its jobs" in str(
        caught.value.message
    )
    assert "your role is 'operator'" in caught.value.message
    assert service.list_jobs(guarded, ADMIN).total == 0  # nothing was stored
    job = service.start_template(guarded, ADMIN, "start-guarded", {})
    assert (job.template, job.owner, job.status) == ("start-guarded", "ada", "queued")
    # start is narrowed, stop is not: the operator may still cancel that job
    assert service.cancel_job(guarded, OPERATOR, job.id).status == JobStatus.CANCELLED


def test_stop_roles_refuse_an_operators_cancel_and_let_an_admin_cancel(guarded: Context) -> None:
    job = service.start_template(guarded, OPERATOR, "stop-guarded", {})  # start stays open
    assert job.owner == "otto"
    with pytest.raises(PermissionDenied) as caught:
        service.cancel_job(guarded, OPERATOR, job.id)
    assert caught.value.right == "cancel"
    assert "template 'stop-guarded' lets only the roles admin stop its jobs" in (
        caught.value.message
    )
    assert status_of(guarded, job.id) == "queued"  # the refused cancel changed nothing
    assert service.cancel_job(guarded, ADMIN, job.id).status == JobStatus.CANCELLED
    assert status_of(guarded, job.id) == "cancelled"


@pytest.fixture
def api(guarded: Context) -> FlaskClient:
    return create_app(context=guarded).test_client()


def refused_naming_the_roles(answer: TestResponse, right: str, action: str) -> None:
    """403 for the right, saying that the template lets only admins ``action``."""
    assert answer.status_code == 403, answer.json
    assert answer.json["right"] == right
    assert f"lets only the roles admin {action} its jobs" in answer.json["message"]


def test_the_api_refuses_an_operators_start_with_403_naming_the_roles(
    api: FlaskClient, guarded: Context
) -> None:
    operator, admin = bearer(guarded, "operator"), bearer(guarded, "admin")
    refused = api.post("/api/catalog/start-guarded/start", json={}, headers=operator)
    refused_naming_the_roles(refused, "start", "start")
    assert api.get("/api/jobs", headers=admin).json["total"] == 0
    started = api.post("/api/catalog/start-guarded/start", json={}, headers=admin)
    assert started.status_code == 202, started.json
    assert started.json["template"] == "start-guarded"
    assert status_of(guarded, started.json["id"]) == "queued"


def test_the_api_refuses_an_operators_cancel_with_403_naming_the_roles(
    api: FlaskClient, guarded: Context
) -> None:
    operator, admin = bearer(guarded, "operator"), bearer(guarded, "admin")
    started = api.post("/api/catalog/stop-guarded/start", json={}, headers=operator)
    assert started.status_code == 202, started.json
    job_id = started.json["id"]
    refused = api.post(f"/api/jobs/{job_id}/cancel", headers=operator)
    refused_naming_the_roles(refused, "cancel", "stop")
    assert status_of(guarded, job_id) == "queued"
    cancelled = api.post(f"/api/jobs/{job_id}/cancel", headers=admin)
    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["status"] == "cancelled"
    assert status_of(guarded, job_id) == "cancelled"
