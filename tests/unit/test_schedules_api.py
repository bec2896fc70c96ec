"""Schedules through the JSON API and the HTML pages (Flask test client, SQLite)."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from tests.support.auth import bearer, csrf_of
from tests.support.specs import docker_spec
from webui import create_app


@pytest.fixture
def client(ctx: Context) -> FlaskClient:
    app: Flask = create_app(context=ctx)
    return app.test_client()


def body(**extra: object) -> dict[str, object]:
    return {"name": "nightly", "cron": "0 3 * * *", "spec": docker_spec(), **extra}


def test_crud_over_the_api(client: FlaskClient, ctx: Context) -> None:
    admin = bearer(ctx, "admin")
    r = client.post("/api/schedules", json=body(timezone="Europe/Berlin"), headers=admin)
    assert r.status_code == 201, r.json
    created = r.json
    assert r.headers["Location"] == f"/api/schedules/{created['id']}"
    assert created["cron"] == "0 3 * * *" and created["next_fire_at"].endswith("+00:00")
    listed = client.get("/api/schedules", headers=admin).json["schedules"]
    assert [s["name"] for s in listed] == ["nightly"]

    r = client.patch("/api/schedules/nightly", json={"interval_s": 300}, headers=admin)
    assert r.status_code == 200 and r.json["cron"] is None and r.json["interval_s"] == 300
    r = client.patch(f"/api/schedules/{created['id']}", json={"enabled": False}, headers=admin)
    assert r.json["enabled"] is False and r.json["next_fire_at"] is None

    r = client.post("/api/schedules/nightly/run-now", headers=bearer(ctx, "operator"))
    assert r.status_code == 202 and r.json["status"] == "queued"
    runs = client.get("/api/schedules/nightly/runs", headers=admin).json["runs"]
    assert [(x["trigger"], x["job_id"]) for x in runs] == [("manual", r.json["id"])]

    assert client.delete("/api/schedules/nightly", headers=admin).status_code == 204
    assert client.get("/api/schedules/nightly", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "every tuesday"}, "cron"),
        ({"timezone": "Atlantis/Capital"}, "timezone"),
        ({"spec": {"name": "x", "steps": []}}, "spec.steps"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: FlaskClient, ctx: Context, change: dict[str, object], field: str
) -> None:
    r = client.post("/api/schedules", json=body(**change), headers=bearer(ctx, "admin"))
    assert r.status_code == 400 and field in r.json["fields"], r.json
    assert client.get("/api/schedules", headers=bearer(ctx, "admin")).json["schedules"] == []


def test_rights_over_the_api(client: FlaskClient, ctx: Context) -> None:
    assert client.get("/api/schedules").status_code == 401
    r = client.post("/api/schedules", json=body(), headers=bearer(ctx, "developer"))
    assert r.status_code == 403 and r.json["right"] == "schedule"
    client.post("/api/schedules", json=body(), headers=bearer(ctx, "admin"))
    viewer = bearer(ctx, "viewer")
    assert client.get("/api/schedules/nightly", headers=viewer).status_code == 200
    assert client.delete("/api/schedules/nightly", headers=viewer).status_code == 403
    assert client.post("/api/schedules/nightly/run-now", headers=viewer).status_code == 403


def test_schedule_pages(client: FlaskClient, ctx: Context, dispatcher: MemoryDispatcher) -> None:
    token = service.create_token(ctx, SYSTEM, name="web", role="admin").token
    login = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"token": token, "csrf_token": csrf_of(login)})
    page = client.get("/schedules").get_data(as_text=True)
    assert "New schedule" in page
    form = {
        "name": "from-form",
        "cron": "*/5 * * * *",
        "timezone": "UTC",
        "catch_up": "skip",
        "catch_up_window_s": "3600",
        "overlap": "skip",
        "enabled": "on",
        "spec": '{"name": "hi", "steps": [{"kind": "docker", "image": "jobsys/busybox:local",'
        ' "command": ["echo", "hi"]}]}',
        "csrf_token": csrf_of(page),
    }
    bad = client.post("/schedules", data={**form, "cron": "*/5 * *"})
    assert bad.status_code == 400 and "give 5" in bad.get_data(as_text=True)
    assert service.list_schedules(ctx, SYSTEM) == []
    r = client.post("/schedules", data=form)
    assert r.status_code == 302
    detail = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "from-form" in detail and "*/5 * * * * (UTC)" in detail and "No runs yet" in detail

    edit = {**form, "cron": "", "interval_s": "60", "csrf_token": csrf_of(detail)}
    assert client.post(r.headers["Location"], data=edit).status_code == 302
    assert service.get_schedule(ctx, SYSTEM, "from-form").interval_s == 60
    client.post(f"{r.headers['Location']}/disable", data={"csrf_token": csrf_of(detail)})
    assert service.get_schedule(ctx, SYSTEM, "from-form").enabled is False
    ran = client.post(f"{r.headers['Location']}/run-now", data={"csrf_token": csrf_of(detail)})
    assert ran.status_code == 302 and "/jobs/" in ran.headers["Location"]
    assert len(dispatcher.published) == 1
    history = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "manual" in history and "run now by web" in history
    client.post(f"{r.headers['Location']}/delete", data={"csrf_token": csrf_of(detail)})
    assert service.list_schedules(ctx, SYSTEM) == []
