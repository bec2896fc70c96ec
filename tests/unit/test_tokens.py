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
from jobsys.cli.main import main
from jobsys.context import Context
from jobsys.errors import SpecError, Unauthenticated
from jobsys.store.models import utcnow
from tests.support.auth import bearer_of
from tests.support.specs import docker_spec

ADMIN = Principal("ada", "admin", "test")


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
    assert client.post("/api/jobs", json=docker_spec(), headers=bearer_of(token)).status_code == 202
    result = cli(ctx, "users", "set-role", "dana", "viewer")
    assert result.exit_code == 0, result.output
    refused = client.post("/api/jobs", json=docker_spec(), headers=bearer_of(token))
    assert refused.status_code == 403 and refused.json["right"] == "submit"
    assert client.get("/api/jobs", headers=bearer_of(token)).status_code == 200  # still a viewer


def test_a_token_for_a_user_is_at_most_their_role_now_and_after_a_demotion(ctx: Context) -> None:
    service.add_user(ctx, ADMIN, name="olga", password="correct horse", role="operator")
    with pytest.raises(SpecError, match="olga is operator in project 'default'"):
        service.create_token(ctx, ADMIN, name="x", role="developer", user="olga")
    operator = service.create_token(ctx, ADMIN, name="x", role="operator", user="olga").token
    viewer = service.create_token(ctx, ADMIN, name="x", role="viewer", user="olga").token
    service_token = service.create_token(ctx, ADMIN, name="ci", role="developer").token

    def role(token: str, project: str = "default") -> str:
        return service.authenticate(ctx, token).role_in(project)

    assert role(operator) == "operator"
    service.update_user(ctx, ADMIN, "olga", role="viewer")
    assert role(operator) == "viewer"
    assert role(viewer) == "viewer"
    with pytest.raises(SpecError, match="olga is viewer"):
        service.create_token(ctx, ADMIN, name="x", role="operator", user="olga")
    service.update_user(ctx, ADMIN, "olga", role="admin")  # promoted: each token's own role caps
    assert role(operator) == "operator"
    assert role(viewer) == "viewer"
    assert role(service_token) == "developer"  # no user: its own role
    # A token acts in its own project only, whatever its user holds elsewhere.
    assert role(operator, "data") == "" and service.authenticate(ctx, operator).role == ""
    # A global token needs a global role of its user.
    with pytest.raises(SpecError, match="olga is nothing globally"):
        service.create_token(ctx, ADMIN, name="x", role="viewer", user="olga", global_token=True)
    service.update_user(ctx, ADMIN, "olga", role="viewer", project=None)
    everywhere = service.create_token(
        ctx, ADMIN, name="x", role="viewer", user="olga", global_token=True
    ).token
    assert service.authenticate(ctx, everywhere).role == "viewer"
    service.update_user(ctx, ADMIN, "olga", role="", project=None)  # no global role any more
    assert service.authenticate(ctx, everywhere).role == ""


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    moment = utcnow() + timedelta(seconds=seconds)
    monkeypatch.setattr("jobsys.service.tokens.utcnow", lambda: moment)


def test_an_expired_token_is_401_naming_why(
    ctx: Context, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = service.create_token(ctx, ADMIN, name="short", role="viewer", expires_in_s=3600)
    assert issued.expires_at is not None
    assert client.get("/api/jobs", headers=bearer_of(issued.token)).status_code == 200
    later(monkeypatch, 3601)
    answer = client.get("/api/jobs", headers=bearer_of(issued.token))
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
    admin = bearer_of(service.create_token(ctx, SYSTEM, name="root", role="admin").token)
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
    client.get("/api/jobs", headers=bearer_of(made.json["token"]))
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


def counted_secret_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the scrypt checks of token secrets (each one ~50 ms of CPU)."""
    from jobsys.service import tokens

    checked: list[str] = []
    real = tokens.verify_secret

    def counting(secret: str, stored: str) -> bool:
        checked.append(secret)
        return real(secret, stored)

    monkeypatch.setattr(tokens, "verify_secret", counting)
    return checked


def test_wrong_secrets_for_one_key_id_are_bounded_then_429(
    ctx: Context, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review: ``jst_<a real key id>.<anything>`` cost a scrypt hash per
    request with no throttle. After 20 wrong secrets for one key id within the
    window: 429 with Retry-After and no hash; a token this process accepted
    before keeps working, another key id is not affected."""
    real = service.create_token(ctx, ADMIN, name="ci", role="viewer").token
    other = service.create_token(ctx, ADMIN, name="other", role="viewer").token
    assert client.get("/api/jobs", headers=bearer_of(real)).status_code == 200  # accepted once
    checked = counted_secret_checks(monkeypatch)
    key = real.partition(".")[0]
    statuses = [
        client.get("/api/jobs", headers=bearer_of(f"{key}.guess{i}")).status_code for i in range(30)
    ]
    assert len(checked) == 20, f"{len(checked)} secrets hashed for one key id"
    assert statuses == [401] * 20 + [429] * 10
    refused = client.get("/api/jobs", headers=bearer_of(f"{key}.again"))
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 15 * 60
    assert "too many wrong secrets" in refused.json["message"]
    assert len(checked) == 20
    assert client.get("/api/jobs", headers=bearer_of(real)).status_code == 200  # from the cache
    assert client.get("/api/jobs", headers=bearer_of(other)).status_code == 200
    assert len(checked) == 21  # the other token's first check


def test_concurrent_wrong_secrets_are_bounded_by_the_count_and_the_slots(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 threads at once with wrong secrets for one key id: at most 20 hashes
    (counted before the hash), and never more at once than the hash slots."""
    import threading
    import time

    from jobsys.service import tokens

    real = service.create_token(ctx, ADMIN, name="ci", role="viewer").token
    key = real.partition(".")[0]
    running, most = [0], [0]
    lock = threading.Lock()
    checked: list[str] = []

    def slow(secret: str, _stored: str) -> bool:
        with lock:
            checked.append(secret)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return False

    monkeypatch.setattr(tokens, "verify_secret", slow)
    start = threading.Barrier(40)
    outcomes: list[str] = []

    def guess(i: int) -> None:
        start.wait(10)
        try:
            service.authenticate(ctx, f"{key}.guess{i}")
        except service.SignInThrottled:
            outcomes.append("429")
        except Unauthenticated:
            outcomes.append("401")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) <= 20 and most[0] <= ctx.settings.sign_in_hash_slots
    assert outcomes.count("401") == len(checked) and len(outcomes) == 40


def test_a_token_check_without_a_free_hash_slot_is_429_at_once(
    ctx: Context, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token secrets take the sign-in's hash slots: a flood gets 429 (Retry-After: 1)
    instead of holding every web thread, and the refusal is not counted."""
    import threading

    from jobsys.service.sign_in_throttle import sign_in_throttle

    real = service.create_token(ctx, ADMIN, name="ci", role="viewer").token
    checked = counted_secret_checks(monkeypatch)
    holding, release = threading.Barrier(ctx.settings.sign_in_hash_slots + 1), threading.Event()

    def hold() -> None:
        with sign_in_throttle(ctx).hashing():
            holding.wait(5)
            release.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(ctx.settings.sign_in_hash_slots)]
    for thread in holders:
        thread.start()
    try:
        holding.wait(5)
        busy = client.get("/api/jobs", headers=bearer_of(real))
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert "tokens are being checked at once" in busy.json["message"]
        assert checked == []
    finally:
        release.set()
        for thread in holders:
            thread.join()
    assert client.get("/api/jobs", headers=bearer_of(real)).status_code == 200


def test_a_name_is_one_identity_across_users_and_service_tokens(ctx: Context) -> None:
    """Clients unpickle a job's results for its code owner, found by name: a
    service token named like a user (or a user named like a service token, or
    like jobsys itself) would read the other's results as their own."""
    service.add_user(ctx, ADMIN, name="dana", password="a long password", role="developer")
    with pytest.raises(SpecError, match="a user named 'dana' exists") as caught:
        service.create_token(ctx, ADMIN, name="dana", role="developer")
    assert set(caught.value.fields) == {"name"}
    assert service.create_token(ctx, ADMIN, name="x", role="viewer", user="dana").name == "dana"
    service.create_token(ctx, ADMIN, name="ci-bot", role="developer")
    for taken in ("ci-bot", SYSTEM.name):
        with pytest.raises(SpecError) as caught:
            service.add_user(ctx, ADMIN, name=taken, password="a long password", role="viewer")
        assert set(caught.value.fields) == {"name"}
    assert [u.name for u in service.list_users(ctx, ADMIN)] == ["dana"]
