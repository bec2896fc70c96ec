"""The JSON API and the HTML pages through Flask's test client, over SQLite and
a recording dispatcher (the real stack is exercised in tests/integration)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from tests.support.auth import bearer, csrf_of
from tests.support.specs import docker_spec
from webui import create_app


def test_no_token_is_401_with_a_hint(client: FlaskClient) -> None:
    r = client.get("/api/jobs")
    assert r.status_code == 401
    assert r.json["error"] == "Unauthenticated"
    assert "jobsys token create" in r.json["message"]
    assert client.get("/api/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_submit_and_read(client: FlaskClient, ctx: Context) -> None:
    headers = bearer(ctx)
    r = client.post("/api/jobs", json=docker_spec(), headers=headers)
    assert r.status_code == 202
    job = r.json
    assert job["status"] == "queued" and r.headers["Location"] == f"/api/jobs/{job['id']}"
    got = client.get(f"/api/jobs/{job['id']}", headers=headers).json
    assert got["spec"]["steps"][0]["command"] == ["sh", "-c", "echo hi"]
    assert got["progress"] == {"done": 0, "total": 1, "eta_s": None}
    listed = client.get("/api/jobs?status=queued", headers=headers).json
    assert [j["id"] for j in listed["jobs"]] == [job["id"]] and listed["total"] == 1
    tasks = client.get(f"/api/jobs/{job['id']}/tasks", headers=headers).json["tasks"]
    assert tasks[0]["state"] == "pending"
    assert client.get(f"/api/jobs/{job['id']}/logs?tail=5", headers=headers).json["logs"] == []
    stats = client.get("/api/stats", headers=headers).json
    assert stats["jobs"]["queued"] == 1 and stats["queues"]["docker"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b'{"steps": [{"kind": "ftp"}]}', "steps[0].kind"),
        (
            b'{"steps": [{"kind": "docker", "image": "jobsys/x", "command": []}]}',
            "steps[0].command",
        ),
        (
            b'{"steps": [{"kind": "docker", "image": "jobsys/x", "command": ["true"],'
            b' "timeout_s": -1}]}',
            "steps[0].timeout_s",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_stores_nothing(
    client: FlaskClient, ctx: Context, dispatcher: MemoryDispatcher, body: bytes, field: str
) -> None:
    headers = {**bearer(ctx), "Content-Type": "application/json"}
    r = client.post("/api/jobs", data=body, headers=headers)
    assert r.status_code == 400, r.json
    assert r.json["error"] == "SpecError" and field in r.json["fields"]
    assert client.get("/api/jobs", headers=headers).json["total"] == 0
    assert dispatcher.published == []


def test_oversized_payload_is_refused(ctx: Context) -> None:
    from dataclasses import replace

    small = replace(ctx, settings=replace(ctx.settings, max_payload_bytes=1000))
    client = create_app(context=small).test_client()
    spec = docker_spec()
    spec["steps"][0]["env"] = {"BIG": "x" * 2000}  # type: ignore[index]
    r = client.post("/api/jobs", json=spec, headers=bearer(ctx))
    assert r.status_code == 413
    assert (
        r.json["error"] == "PayloadTooLarge"
        and "JOBSYS_MAX_PAYLOAD_BYTES" in (r.json["fields"]["body"])
    )


def test_viewer_gets_403_naming_the_right(client: FlaskClient, ctx: Context) -> None:
    r = client.post("/api/jobs", json=docker_spec(), headers=bearer(ctx, "viewer"))
    assert r.status_code == 403 and r.json["right"] == "submit"


def test_unknown_job_and_route_are_json_404(client: FlaskClient, ctx: Context) -> None:
    headers = bearer(ctx)
    assert client.get("/api/jobs/nope", headers=headers).json["error"] == "NotFoundError"
    r = client.get("/api/nothing-here", headers=headers)
    assert r.status_code == 404 and r.is_json


def test_tokens_route_is_admin_only(client: FlaskClient, ctx: Context) -> None:
    body = {"name": "bot", "role": "viewer"}
    assert client.post("/api/tokens", json=body, headers=bearer(ctx)).status_code == 403
    r = client.post("/api/tokens", json=body, headers=bearer(ctx, "admin"))
    assert r.status_code == 201 and r.json["token"].startswith("jst_")


def test_pages_sign_in_and_submit_with_csrf(
    client: FlaskClient, ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    assert client.get("/jobs").status_code == 302  # to the sign-in page
    token = service.create_token(ctx, SYSTEM, name="web", role="developer").token
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login?next=/jobs/new", data={"token": token, "csrf_token": csrf_of(page)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/jobs/new")

    form_page = client.get("/jobs/new").get_data(as_text=True)
    form = {
        "name": "from-form",
        "image": "jobsys/busybox:local",
        "command": "echo hi",
        "timeout_s": "30",
        "csrf_token": csrf_of(form_page),
    }
    assert client.post("/jobs/new", data={**form, "csrf_token": "forged"}).status_code == 400
    assert dispatcher.published == []
    bad = client.post("/jobs/new", data={**form, "timeout_s": "-3"})
    assert bad.status_code == 400 and "give a number above 0" in bad.get_data(as_text=True)
    r = client.post("/jobs/new", data=form)
    assert r.status_code == 302
    detail = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "from-form" in detail and "queued" in detail
    listing = client.get("/jobs").get_data(as_text=True)
    assert "from-form" in listing
    assert len(dispatcher.published) == 1
