"""Database down at submit (issue 8, guarantee 4): the web app, served over real
HTTP, reaches PostgreSQL through a TCP proxy the test cuts. While it is cut,
every request answers 503 ``DatabaseUnavailable`` with a clear message (JSON
for the API and the client, an error page for HTML pages), also when the
database drops in the middle of the submit's own transaction. Once it is back,
submissions work again, and nothing was half-written: every job stored has its
steps, only accepted jobs exist and only they were published."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import BaseWSGIServer, make_server

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.client.http import Client
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.errors import DatabaseUnavailable
from jobsys.store.db import make_session_factory
from jobsys.store.models import IdempotencyKey, Job, Step
from tests.support.auth import bearer_of, csrf_of
from tests.support.examples import EXAMPLES
from tests.support.services import POSTGRES_URL, postgres_schema_url, require_postgres
from tests.support.specs import docker_spec
from tests.support.tcp_proxy import TcpProxy
from webui import create_app

pytestmark = pytest.mark.integration

#: never run: the dispatcher only records what it was given
SPEC = {**docker_spec("true"), "name": "survives"}


@dataclass
class Web:
    """The web app over PostgreSQL-through-the-proxy, served on a real port."""

    url: str
    proxy: TcpProxy
    ctx: Context
    dispatcher: MemoryDispatcher
    token: str

    def client(self) -> Client:
        return Client(self.url, token=self.token, timeout=10)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    require_postgres()
    direct = make_url(POSTGRES_URL)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    proxy.start()
    through = direct.set(port=proxy.port).render_as_string(hide_password=False)
    schema = f"dbdown_{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env(
        {},
        data_dir=str(tmp_path),
        database_url=postgres_schema_url(schema, through),
        secret_key="reliability-secret-key-0123456789",
        catalog_dir=str(EXAMPLES),
        outbox_grace_s=0.0,
    )
    dispatcher = MemoryDispatcher()
    ctx = Context(settings, make_session_factory(settings), dispatcher)
    service.reload_catalog(ctx, SYSTEM)
    token = service.create_token(ctx, SYSTEM, name="dev", role="admin").token
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(context=ctx), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Web(f"http://127.0.0.1:{server.port}", proxy, ctx, dispatcher, token)
    finally:
        server.shutdown()
        proxy.stop()
        ctx.sessions.kw["bind"].dispose()
        engine = create_engine(POSTGRES_URL)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def stored(web: Web) -> dict[str, Any]:
    """What the database holds, read past the proxy."""
    with web.ctx.sessions() as session:
        jobs = list(session.scalars(select(Job.id)))
        stepless = session.scalar(select(func.count()).select_from(Job).where(~Job.steps.any()))
        return {
            "jobs": set(jobs),
            "steps": session.scalar(select(func.count()).select_from(Step)),
            "jobs without steps": stepless,
            "keys": session.scalar(select(func.count()).select_from(IdempotencyKey)),
        }


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "DatabaseUnavailable"
    assert "the database is unavailable" in body["message"]
    assert "try again" in body["message"]


def test_database_down_at_submit_is_503_and_nothing_is_half_written(web: Web) -> None:
    accepted: set[str] = set()
    with web.client() as client:
        accepted.add(client.submit_spec(SPEC).id)
    auth = bearer_of(web.token)
    http = httpx.Client(base_url=web.url, timeout=10)
    page = sign_in(http, web.token)
    form_csrf = csrf_of(page.get("/jobs/new").text)

    web.proxy.stop()
    started = time.monotonic()
    r = http.post("/api/jobs", json=SPEC, headers=auth)
    assert_unavailable(r)
    assert re.search(r"refused|connect|closed", r.json()["message"], re.IGNORECASE)
    assert_unavailable(http.get("/api/jobs", headers=auth))
    assert_unavailable(http.post("/api/catalog/echo/start", json={"variables": {}}, headers=auth))
    keyed = {**auth, "Idempotency-Key": "retry-me"}
    assert_unavailable(http.post("/api/jobs", json=SPEC, headers=keyed))
    with web.client() as client, pytest.raises(DatabaseUnavailable, match="try again"):
        client.submit_spec(SPEC)
    # A signed-in page gets an error page, not a traceback.
    r = page.get("/jobs")
    assert r.status_code == 503 and "text/html" in r.headers["Content-Type"]
    assert "the database is unavailable" in r.text
    r = page.post("/jobs/new", data={"csrf_token": form_csrf, "image": "x"})
    assert r.status_code == 503
    assert time.monotonic() - started < 10, "a dead database answers fast, it does not hang"

    web.proxy.start()
    with web.client() as client:
        accepted.add(client.submit_spec(SPEC).id)
        again = http.post("/api/jobs", json=SPEC, headers=keyed)
        assert again.status_code == 202
        accepted.add(again.json()["id"])
        repeat = http.post("/api/jobs", json=SPEC, headers=keyed)
        assert repeat.json()["id"] == again.json()["id"]
        assert repeat.headers["Idempotent-Replayed"] == "true"
    assert page.get("/jobs").status_code == 200

    found = stored(web)
    assert found["jobs"] == accepted
    assert found["steps"] == len(accepted) and found["jobs without steps"] == 0
    assert found["keys"] == 1
    assert len(web.dispatcher.published) == len(accepted)


def test_the_database_dropping_inside_the_submit_transaction_leaves_nothing(web: Web) -> None:
    """The proxy is cut right after the job's rows were sent and before COMMIT:
    the server rolls the transaction back, the caller gets a 503."""
    armed = threading.Event()
    engine = web.ctx.sessions.kw["bind"]

    @event.listens_for(engine, "after_cursor_execute")
    def cut_after_the_job_is_sent(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if armed.is_set() and statement.startswith("INSERT INTO jobs "):
            armed.clear()
            web.proxy.stop()

    before = stored(web)
    auth = bearer_of(web.token)
    with httpx.Client(base_url=web.url, timeout=10) as http:
        for headers in (auth, {**auth, "Idempotency-Key": "mid-commit"}):
            armed.set()
            assert_unavailable(http.post("/api/jobs", json=SPEC, headers=headers))
            assert not web.proxy.running
            web.proxy.start()
            assert stored(web) == before
        event.remove(engine, "after_cursor_execute", cut_after_the_job_is_sent)
        r = http.post("/api/jobs", json=SPEC, headers={**auth, "Idempotency-Key": "mid-commit"})
        assert r.status_code == 202 and "Idempotent-Replayed" not in r.headers
    after = stored(web)
    assert after["jobs"] == before["jobs"] | {r.json()["id"]}
    assert after["jobs without steps"] == 0 and after["keys"] == 1
    assert len(web.dispatcher.published) == 1


def sign_in(http: httpx.Client, token: str) -> httpx.Client:
    """A browser-like client over real HTTP signed in to the pages with the
    token (support.auth.sign_in signs in a Flask test client)."""
    page = httpx.Client(base_url=str(http.base_url), timeout=10)
    csrf = csrf_of(page.get("/login").text)
    r = page.post("/login", data={"token": token, "csrf_token": csrf})
    assert r.status_code == 302, r.text
    return page


# -- every route, on SQLite as well as PostgreSQL ------------------------------


@dataclass
class Outage:
    """A served web app whose database the test can take away and give back."""

    url: str
    ctx: Context
    token: str
    cut: Callable[[], None]
    restore: Callable[[], None]
    #: What the 503's message must name as the cause.
    reason: str
    #: Whether reads go on during it (a foreign writer's lock: WAL readers never wait).
    reads_work: bool = False


def sqlite_web(tmp_path: Path) -> tuple[str, Context, str, Callable[[], None]]:
    """The web app on a SQLite file in ``tmp_path/db``, served on a real port."""
    folder = tmp_path / "db"
    folder.mkdir()
    settings = Settings.from_env(
        {},
        data_dir=str(tmp_path),
        database_url=f"sqlite:///{folder / 'jobsys.db'}",
        secret_key="reliability-secret-key-0123456789",
        catalog_dir=str(EXAMPLES),
        outbox_grace_s=0.0,
    )
    ctx = Context(settings, make_session_factory(settings), MemoryDispatcher())
    service.reload_catalog(ctx, SYSTEM)
    token = service.create_token(ctx, SYSTEM, name="dev", role="admin").token
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(context=ctx), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.port}", ctx, token, server.shutdown


@pytest.fixture(params=["postgresql", "sqlite-locked", "sqlite-gone"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    """How each database goes away from a running web app.

    - postgresql: the server stops answering (the proxy in front of it is cut).
    - sqlite-locked: another process holds the file's write lock (a backup, a
      stuck ``sqlite3`` shell). Every jobsys transaction that may write is
      ``BEGIN IMMEDIATE``, so it waits out the busy timeout and then fails
      "database is locked"; the test shortens the web app's busy timeout from
      30 s to 0.05 s (an event on its engine), the path is the same. Reads in
      reading sessions (WAL) go on, so only the routes that change something
      are called.
    - sqlite-gone: the folder holding the file is gone (a volume unmounted or
      moved). A connection opened since (a new web process, the pool's next
      connection; the test empties the pool to get one) cannot open the file.
    """
    if request.param == "postgresql":
        web: Web = request.getfixturevalue("web")
        yield Outage(
            web.url, web.ctx, web.token, web.proxy.stop, web.proxy.start, "refused|connect|closed"
        )
        return
    url, ctx, token, shutdown = sqlite_web(tmp_path)
    engine = ctx.sessions.kw["bind"]
    folder = Path(engine.url.database).parent
    holder: list[sqlite3.Connection] = []
    if request.param == "sqlite-locked":

        @event.listens_for(engine, "connect")
        def _short_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA busy_timeout=50")

        engine.dispose()

        def cut() -> None:
            other = sqlite3.connect(engine.url.database, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            holder.append(other)

        def restore() -> None:
            holder.pop().close()  # rolls back, releasing the lock

        reason = "database is locked"
    else:
        away = folder.with_name("db-away")

        def cut() -> None:
            folder.rename(away)
            engine.dispose()

        def restore() -> None:
            away.rename(folder)

        reason = "unable to open database file"
    try:
        yield Outage(url, ctx, token, cut, restore, reason, request.param == "sqlite-locked")
    finally:
        for other in holder:
            other.close()
        shutdown()
        engine.dispose()


#: Routes that never open the database, so they answer while it is down: the
#: API description and static files are files in the package, and the sign-in
#: form is a template (signing in itself needs the database, and answers 503).
#: Sign-in with an identity provider is 404 here, where none is set up (with
#: one, the start is a redirect to it, and its callback signs in: 503).
NO_DATABASE = {
    ("GET", "/api/openapi.json"): 200,
    ("GET", "/static/<path:filename>"): 200,
    ("GET", "/login"): 200,
    ("GET", "/login/oidc"): 404,
    ("GET", "/login/oidc/callback"): 404,
}
#: Routes answered to programs (JSON errors, bearer tokens); the others are
#: pages, visited here by a signed-in browser that sends the form's CSRF token.
MACHINE_PREFIXES = ("/api/", "/metrics", "/flower/")


def test_every_route_answers_503_while_the_database_is_down(outage: Outage) -> None:
    """The README: "While the database is unreachable every route answers 503
    DatabaseUnavailable (an error page in the browser)". Each (method, rule) of
    the app's URL map is called with real values (a job, schedule, template,
    token and user that exist), so each reaches the code it runs for real."""
    ctx = outage.ctx
    job = service.submit_job(ctx, SYSTEM, SPEC)
    service.create_schedule(ctx, SYSTEM, {"name": "nightly", "cron": "0 3 * * *", "spec": SPEC})
    service.add_user(ctx, SYSTEM, name="olga", password="a-long-password-1", role="viewer")
    spare = service.create_token(ctx, SYSTEM, name="spare", role="viewer")
    token_id = next(t.id for t in service.list_tokens(ctx, SYSTEM) if t.name == spare.name)
    values = {
        "job_id": job.id,
        "name": "echo",
        "ref": "nightly",
        "token_id": str(token_id),
        "path": "api/workers",
        "filename": "style.css",
        "project": "default",
        "user": "olga",
    }
    app = create_app(context=ctx)
    # Sign-out last: were it to work while the database is down, it would end
    # the session the page routes after it are visited with.
    routes = sorted(
        (
            (method, rule.rule)
            for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}
        ),
        key=lambda route: (route[1] == "/logout", route),
    )
    auth = bearer_of(outage.token)
    api = httpx.Client(base_url=outage.url, timeout=10, headers=auth)
    browser = sign_in(api, outage.token)
    csrf = csrf_of(browser.get("/jobs/new").text)
    assert browser.get("/jobs").status_code == 200

    def call(method: str, rule: str) -> httpx.Response:
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: values[m.group(1)], rule)
        if rule.startswith(MACHINE_PREFIXES):
            body = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
            return api.request(method, url, **body)
        return browser.request(method, url, data={"csrf_token": csrf})

    outage.cut()
    problems: list[str] = []
    try:
        started = time.monotonic()
        for method, rule in routes:
            if outage.reads_work and method == "GET":
                continue
            r = call(method, rule)
            if outage.reads_work and (
                400 <= r.status_code < 500 or (r.status_code == 503 and "DispatchError" in r.text)
            ):
                continue  # refused (bad body) or forwarded (Flower) before any write
            if (method, rule) in NO_DATABASE:
                if r.status_code != NO_DATABASE[method, rule]:
                    problems.append(f"{method} {rule}: {r.status_code}, needs no database")
                continue
            if r.status_code != 503:
                problems.append(f"{method} {rule}: {r.status_code} {r.text[:200]!r}")
            elif rule.startswith(MACHINE_PREFIXES):
                body = r.json()
                message = body.get("message", "")
                if body.get("error") != "DatabaseUnavailable" or not (
                    "the database is unavailable" in message
                    and "try again" in message
                    and re.search(outage.reason, message, re.IGNORECASE)
                ):
                    problems.append(f"{method} {rule}: unclear 503 {body}")
            elif "text/html" not in r.headers["Content-Type"] or not (
                "the database is unavailable" in r.text and re.search(outage.reason, r.text)
            ):
                problems.append(f"{method} {rule}: not the error page: {r.text[:200]!r}")
        took = time.monotonic() - started
    finally:
        outage.restore()
    assert problems == [], "\n".join(problems)
    # a locked SQLite waits out its (shortened) busy timeout once per request, no more
    assert took < 3 * len(routes), f"{len(routes)} routes took {took:.0f} s"
    # and once the database is back, the same callers are served again
    assert api.get(f"/api/jobs/{job.id}").status_code == 200
    assert browser.get("/jobs").status_code == 200
