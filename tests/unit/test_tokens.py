"""API tokens (issue 14, items 5 and 18): a user's token acts with at most the
user's current role; tokens may expire (401 naming why); the list shows last
use and expiry; ``last_used_at`` costs at most one write a minute per token."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.cli import main
from jobsys.context import Context
from jobsys.errors import SpecError, Unauthenticated
from jobsys.models import utcnow
from tests.unit.conftest import docker_spec
from webui import create_app

ADMIN = Principal("ada", "admin", "test")


@pytest.fixture
def app(ctx: Context) -> Flask:
    return create_app(context=ctx)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli(ctx: Context, *args: str) -> Any:
    """``jobsys ...`` on the test's database, as an operator would run it."""
    settings = ctx.settings
    env = {
        "JOBSYS_DATABASE_URL": settings.database_url,
        "JOBSYS_DATA_DIR": settings.data_dir,
        "JOBSYS_SECRET_KEY": settings.secret_key,
    }
    return CliRunner().invoke(main, list(args), env=env)


def test_a_demoted_users_token_loses_the_rights_at_once(ctx: Context, client: FlaskClient) -> None:
    """The review: after ``jobsys users set-role NAME viewer`` their developer
    token still submitted (202)."""
    service.add_user(ctx, ADMIN, name="dana", password="correct horse", role="developer")
    token = service.create_token(ctx, ADMIN, name="x", role="developer", user="dana").token
    assert client.post("/api/jobs", json=docker_spec(), headers=bearer(token)).status_code == 202
    result = cli(ctx, "users", "set-role", "dana", "viewer")
    assert result.exit_code == 0, result.output
    refused = client.post("/api/jobs", json=docker_spec(), headers=bearer(token))
    assert refused.status_code == 403 and refused.json["right"] == "submit"
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 200  # still a viewer


def test_a_token_for_a_user_is_at_most_their_role_now_and_after_a_demotion(ctx: Context) -> None:
    service.add_user(ctx, ADMIN, name="olga", password="correct horse", role="operator")
    with pytest.raises(SpecError, match="olga is operator"):
        service.create_token(ctx, ADMIN, name="x", role="developer", user="olga")
    operator = service.create_token(ctx, ADMIN, name="x", role="operator", user="olga").token
    viewer = service.create_token(ctx, ADMIN, name="x", role="viewer", user="olga").token
    service_token = service.create_token(ctx, ADMIN, name="ci", role="developer").token
    assert service.authenticate(ctx, operator).role == "operator"
    service.update_user(ctx, ADMIN, "olga", role="viewer")
    assert service.authenticate(ctx, operator).role == "viewer"
    assert service.authenticate(ctx, viewer).role == "viewer"
    with pytest.raises(SpecError, match="olga is viewer"):
        service.create_token(ctx, ADMIN, name="x", role="operator", user="olga")
    service.update_user(ctx, ADMIN, "olga", role="admin")  # promoted: each token's own role caps
    assert service.authenticate(ctx, operator).role == "operator"
    assert service.authenticate(ctx, viewer).role == "viewer"
    assert service.authenticate(ctx, service_token).role == "developer"  # no user: its own role


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    moment = utcnow() + timedelta(seconds=seconds)
    monkeypatch.setattr("jobsys.service.tokens.utcnow", lambda: moment)


def test_an_expired_token_is_401_naming_why(
    ctx: Context, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = service.create_token(ctx, ADMIN, name="short", role="viewer", expires_in_s=3600)
    assert issued.expires_at is not None
    assert client.get("/api/jobs", headers=bearer(issued.token)).status_code == 200
    later(monkeypatch, 3601)
    answer = client.get("/api/jobs", headers=bearer(issued.token))
    key_id = issued.token[4:16]
    assert answer.status_code == 401
    assert (
        f"token {key_id} (short) expired at {issued.expires_at.isoformat()}"
        in (answer.json["message"])
    )
    # Only to whoever holds it: a wrong secret for the same key id learns nothing.
    wrong = issued.token.rsplit(".", 1)[0] + ".wrong"
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        service.authenticate(ctx, wrong)
    listed = service.list_tokens(ctx, ADMIN)[0]
    assert listed.expired and listed.state == "expired"


def test_tokens_expire_over_the_api(ctx: Context, client: FlaskClient) -> None:
    admin = bearer(service.create_token(ctx, SYSTEM, name="root", role="admin").token)
    made = client.post(
        "/api/tokens",
        json={"name": "ci", "role": "viewer", "expires_in_s": 90 * 86400},
        headers=admin,
    )
    assert made.status_code == 201
    expires = made.json["expires_at"]
    assert expires.startswith((utcnow() + timedelta(days=90)).date().isoformat())
    forever = client.post("/api/tokens", json={"name": "x", "role": "viewer"}, headers=admin)
    assert forever.json["expires_at"] is None
    for bad in (0, -5, True, "90d", 1.5, 10**12):
        answer = client.post(
            "/api/tokens", json={"name": "x", "role": "viewer", "expires_in_s": bad}, headers=admin
        )
        assert answer.status_code == 400 and "expires_in_s" in answer.json["fields"], bad
    client.get("/api/jobs", headers=bearer(made.json["token"]))
    listed = {t["name"]: t for t in client.get("/api/tokens", headers=admin).json["tokens"]}
    assert listed["ci"]["expires_at"] == expires and listed["ci"]["expired"] is False
    assert listed["ci"]["last_used_at"] is not None and listed["x"]["last_used_at"] is None


def test_the_cli_makes_expiring_tokens_and_lists_use_and_expiry(ctx: Context) -> None:
    made = cli(ctx, "token", "create", "--role", "viewer", "--expires-in", "90d", "--json")
    assert made.exit_code == 0, made.output
    issued = json.loads(made.output)
    assert issued["expires_at"].startswith((utcnow() + timedelta(days=90)).date().isoformat())
    service.authenticate(ctx, issued["token"])
    cli(ctx, "token", "create", "--role", "viewer", "--name", "forever")
    listing = cli(ctx, "token", "list").output.splitlines()
    assert "LAST USED" in listing[0] and "EXPIRES" in listing[0]
    assert utcnow().strftime("%Y-%m-%d") in listing[1]  # used today
    assert listing[2].rstrip().endswith("never")
    bad = cli(ctx, "token", "create", "--expires-in", "90x")
    assert bad.exit_code == 2 and "not a duration" in bad.output
    listed = json.loads(cli(ctx, "token", "list", "--json").output)
    assert listed[0]["expires_at"] == issued["expires_at"]


def test_the_admin_page_shows_last_use_and_expiry(ctx: Context, app: Flask) -> None:
    admin = service.create_token(ctx, SYSTEM, name="root", role="admin").token
    service.create_token(ctx, SYSTEM, name="ci", role="viewer", expires_in_s=86400)
    client = app.test_client()
    with client.session_transaction() as session:
        session["ref"] = service.start_web_session(ctx, token=admin).reference
    page = client.get("/users").get_data(as_text=True)
    assert "<th>Last used</th><th>Expires</th>" in page
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%d")
    assert tomorrow in page and ">never<" in page


def test_last_used_is_written_at_most_once_a_minute(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = service.create_token(ctx, SYSTEM, name="busy", role="viewer").token
    writes: list[str] = []
    engine = ctx.sessions.kw["bind"]

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TOKENS"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            service.authenticate(ctx, token)
        assert len(writes) == 1, "the first use is written, the next 19 are not"
        first = service.list_tokens(ctx, ADMIN)[0].last_used_at
        later(monkeypatch, 61)
        for _ in range(5):
            service.authenticate(ctx, token)
        assert len(writes) == 2
        assert service.list_tokens(ctx, ADMIN)[0].last_used_at > first  # type: ignore[operator]
    finally:
        event.remove(engine, "before_cursor_execute", count)
