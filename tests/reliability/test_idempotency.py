"""Idempotency keys (issue 8, guarantee 8): a submit or a template start sent
again with the same ``Idempotency-Key`` within 24 h gets the first job back
and nothing new is stored or published; the same key with another request is
a 422; keys are per caller; old keys are ignored, then swept; two repeats
racing on PostgreSQL still make one job; the client and the CLI pass keys on."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text, update

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.cli.main import main
from jobsys.client.http import Client
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.errors import IdempotencyMismatch
from jobsys.service import idempotency
from jobsys.store.db import make_session_factory
from jobsys.store.models import IdempotencyKey, Job, Step, utcnow
from tests.support.auth import bearer, bearer_of
from tests.support.fixtures import make_settings
from tests.support.services import POSTGRES_URL, postgres_schema_url, require_postgres

SPEC = {
    "name": "once",
    "steps": [{"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}],
}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def counts(ctx: Context) -> tuple[int, int, int]:
    """Jobs, steps and idempotency keys stored."""
    with ctx.sessions() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Job, Step, IdempotencyKey)
        )


def post(client: FlaskClient, headers: dict[str, str], key: str | None, body: Any = SPEC) -> Any:
    extra = {} if key is None else {"Idempotency-Key": key}
    return client.post("/api/jobs", json=body, headers={**headers, **extra})


def test_a_repeat_gets_the_first_job_and_nothing_new(
    client: FlaskClient, ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    dev = bearer(ctx, "developer")
    first = post(client, dev, "order-42")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = post(client, dev, "order-42")
    assert again.status_code == 202, again.json
    assert again.json["id"] == first.json["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    # The same request written with other key order and spacing is the same request.
    reordered = {"steps": [dict(reversed(list(SPEC["steps"][0].items())))], "name": "once"}
    assert post(client, dev, "order-42", reordered).json["id"] == first.json["id"]
    assert counts(ctx) == (1, 1, 1)
    assert len(dispatcher.published) == 1
    # Without a key, or with another, a submit is a new job as always.
    assert post(client, dev, None).json["id"] != first.json["id"]
    assert post(client, dev, "order-43").json["id"] != first.json["id"]
    assert counts(ctx) == (3, 3, 2)


def test_the_same_key_with_another_request_is_422_and_stores_nothing(
    client: FlaskClient, ctx: Context
) -> None:
    dev = bearer(ctx, "developer")
    first = post(client, dev, "k1").json
    r = post(client, dev, "k1", {**SPEC, "name": "another"})
    assert r.status_code == 422
    assert r.json["error"] == "IdempotencyMismatch"
    message = r.json["fields"]["Idempotency-Key"]
    assert first["id"] in message and "use a new key for a new request" in message
    # Another route is another request, even with a body that happens to match.
    r = client.post(
        "/api/catalog/echo/start", json={"variables": {}}, headers={**dev, "Idempotency-Key": "k1"}
    )
    assert r.status_code == 422 and r.json["error"] == "IdempotencyMismatch"
    assert counts(ctx) == (1, 1, 1)


def test_keys_belong_to_their_caller(client: FlaskClient, ctx: Context) -> None:
    alice, bob = bearer(ctx, "developer"), bearer(ctx, "admin")
    a = post(client, alice, "nightly").json
    b = post(client, bob, "nightly").json
    assert a["id"] != b["id"] and (a["owner"], b["owner"]) == ("developer", "admin")
    assert post(client, alice, "nightly").json["id"] == a["id"]
    assert counts(ctx) == (2, 2, 2)


def test_starting_a_template_is_idempotent_too(
    client: FlaskClient, ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    op = {**bearer(ctx, "operator"), "Idempotency-Key": "deploy-7"}
    body = {"variables": {"message": "hi", "times": 2}}
    first = client.post("/api/catalog/echo/start", json=body, headers=op)
    again = client.post("/api/catalog/echo/start", json=body, headers=op)
    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/catalog/echo/start", json={"variables": {"times": 3}}, headers=op)
    assert other.status_code == 422 and "deploy-7" in other.json["message"]
    assert counts(ctx) == (1, 1, 1) and len(dispatcher.published) == 1


@pytest.mark.parametrize(
    "key",
    ["", "   ", "x" * 256, "naïve", "tab\there"],
    ids=["empty", "blank", "long", "utf8", "tab"],
)
def test_a_malformed_key_is_400_naming_the_header(
    client: FlaskClient, ctx: Context, key: str
) -> None:
    headers = {**bearer(ctx, "developer"), "Idempotency-Key": key}
    r = client.post("/api/jobs", json=SPEC, headers=headers)
    assert r.status_code == 400 and "Idempotency-Key" in r.json["fields"]
    assert counts(ctx) == (0, 0, 0)


def age(ctx: Context, key: str, hours: float) -> None:
    with ctx.sessions.begin() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(created_at=utcnow() - timedelta(hours=hours))
        )


def test_a_key_older_than_a_day_names_a_new_request(client: FlaskClient, ctx: Context) -> None:
    dev = bearer(ctx, "developer")
    first = post(client, dev, "daily").json
    age(ctx, "daily", 23.5)
    assert post(client, dev, "daily").json["id"] == first["id"]
    age(ctx, "daily", 24.5)
    second = post(client, dev, "daily", {**SPEC, "name": "changed, and that is fine now"})
    assert second.status_code == 202 and second.json["id"] != first["id"]
    assert post(client, dev, "daily").status_code == 422  # bound to the new request now
    assert counts(ctx) == (2, 2, 1)


def test_the_hourly_sweep_deletes_keys_older_than_a_day(client: FlaskClient, ctx: Context) -> None:
    """Whether or not history retention is on: keys only ever matter for a day."""
    dev = bearer(ctx, "developer")
    for key in ("old-1", "old-2", "fresh"):
        post(client, dev, key)
    age(ctx, "old-1", 25)
    age(ctx, "old-2", 48)
    assert ctx.settings.retention_days == 0
    assert service.purge_history(ctx) == service.Purged(idempotency_keys=2)
    with ctx.sessions() as session:
        assert list(session.scalars(select(IdempotencyKey.key))) == ["fresh"]
    assert counts(ctx) == (3, 3, 1)  # the jobs stay: retention is off
    keeping = replace(ctx, settings=replace(ctx.settings, retention_days=30))
    assert service.purge_history(keeping) == service.Purged()


def test_the_client_and_the_cli_pass_the_key_on(
    app: Flask, ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = bearer(ctx, "developer")["Authorization"].split()[1]

    def wsgi_client(*_args: Any, **_kwargs: Any) -> Client:
        client = Client("http://jobsys.test", token=token)
        client._http = httpx.Client(
            transport=httpx.WSGITransport(app=app),
            base_url="http://jobsys.test",
            headers=bearer_of(token),
        )
        return client

    with wsgi_client() as client:
        job = client.submit_spec(SPEC, idempotency_key="client-1")
        assert client.submit_spec(SPEC, idempotency_key="client-1").id == job.id
        with pytest.raises(IdempotencyMismatch, match="client-1"):
            client.submit_spec({**SPEC, "name": "other"}, idempotency_key="client-1")
        started = client.start("echo", idempotency_key="client-2", times=2)
        assert client.start("echo", idempotency_key="client-2", times=2).id == started.id

    monkeypatch.setattr("jobsys.cli.jobs.Client", wsgi_client)
    spec_file = tmp_path / "job.json"
    spec_file.write_text(json.dumps(SPEC))
    runner = CliRunner()
    args = ["submit", "spec", str(spec_file), "--idempotency-key", "client-1", "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert job.id in result.output
    spec_file.write_text(spec_file.read_text().replace("once", "twice"))
    result = runner.invoke(main, args)
    assert result.exit_code == 2 and "client-1" in result.output
    assert counts(ctx) == (2, 2, 2)


@pytest.fixture
def pg_ctx(tmp_path: Path) -> Iterator[Context]:
    """A context over a private schema of the test PostgreSQL."""
    require_postgres()
    schema = f"idem_{uuid.uuid4().hex[:10]}"
    settings = service_settings(tmp_path, postgres_schema_url(schema))
    ctx = Context(settings, make_session_factory(settings), MemoryDispatcher())
    yield ctx
    ctx.sessions.kw["bind"].dispose()
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def service_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


def submitted_in_threads(ctx: Context, key: str, n: int, *, together: bool = False) -> list[str]:
    """``n`` threads submit SPEC with one idempotency key (``together``: let go
    at the same moment); the job ids they were answered with."""
    dev = Principal("dev", "developer")
    once = service.Idempotency.of(key, "POST /api/jobs", SPEC)
    start = threading.Barrier(n, timeout=10)
    got: list[str] = []

    def submit() -> None:
        if together:
            start.wait()
        got.append(service.submit_job(ctx, dev, SPEC, once=once).id)

    threads = [threading.Thread(target=submit) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return got


@pytest.mark.integration
def test_two_repeats_racing_on_postgresql_make_one_job(
    pg_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both look the key up before either commits, so both insert: the unique
    constraint lets one commit, and the other rolls back and returns its job."""
    both_looked = threading.Barrier(2, timeout=10)
    lookup = idempotency._earlier_job

    def lookup_then_wait(*args: Any) -> str | None:
        found = lookup(*args)
        if found is None:
            both_looked.wait()
        return found

    monkeypatch.setattr(idempotency, "_earlier_job", lookup_then_wait)
    got = submitted_in_threads(pg_ctx, "race-1", 2)
    assert len(got) == 2 and got[0] == got[1]
    assert counts(pg_ctx) == (1, 1, 1)
    assert len(pg_ctx.dispatcher.published) == 1  # type: ignore[attr-defined]


@pytest.mark.integration
def test_many_repeats_at_once_on_postgresql_make_one_job(pg_ctx: Context) -> None:
    got = submitted_in_threads(pg_ctx, "race-2", 8, together=True)
    assert len(got) == 8 and len(set(got)) == 1
    assert counts(pg_ctx) == (1, 1, 1)
