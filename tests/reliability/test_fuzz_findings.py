"""What fuzzing the API found, kept as plain regression tests (the fuzzer may
not draw the same request again)."""

from __future__ import annotations

import time

from flask import Flask

from jobsys.context import Context
from tests.support.auth import bearer


def test_pointing_a_schedule_at_a_template_answers_at_once_on_sqlite(
    app: Flask, ctx: Context
) -> None:
    """The template was looked up in a second session inside the PATCH's write
    transaction: on SQLite it waited for the first's lock until the 30 s busy
    timeout, then failed (a 500, later a 503 "database is locked")."""
    client = app.test_client()
    admin = bearer(ctx, "admin")
    spec = {
        "name": "x",
        "steps": [{"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}],
    }
    created = client.post(
        "/api/schedules", json={"name": "n", "cron": "0 3 * * *", "spec": spec}, headers=admin
    )
    assert created.status_code == 201
    started = time.monotonic()
    r = client.patch(
        "/api/schedules/n", json={"template": "echo", "variables": {"times": 2}}, headers=admin
    )
    assert r.status_code == 200, r.json
    assert r.json["template"] == "echo" and r.json["spec"] is None
    r = client.patch("/api/schedules/n", json={"template": "nope"}, headers=admin)
    assert r.status_code == 400 and "no template 'nope'" in r.json["message"]
    assert time.monotonic() - started < 5
