"""A corpus of bad requests (issue 8): malformed JSON, wrong types, huge
payloads, deep nesting, unknown fields, path traversal in template names, cron
garbage, images outside the allow-list, privileged and host-mount requests,
bad tokens and form posts without a CSRF token. Each gets its 4xx with a
message that says what is wrong, none a 500, and leaves the database and the
broker holding exactly what they held before it.

One app per database (SQLite, and PostgreSQL as an integration test) serves
the whole module; each case compares the state before and after its own
request, so no case depends on another having run, or on their order.
"""

from __future__ import annotations

import gzip
import html
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text, update

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.states import JobStatus
from jobsys.store.models import (
    CatalogEntry,
    IdempotencyKey,
    Job,
    Schedule,
    ScheduleRun,
    Step,
    Token,
    User,
)
from tests.support.auth import bearer_of, csrf_of
from tests.support.examples import EXAMPLES
from tests.support.fixtures import make_context, make_settings
from tests.support.services import POSTGRES_URL, postgres_schema_url, require_postgres
from webui import create_app

LIMIT = 1_000_000  # JOBSYS_MAX_PAYLOAD_BYTES for these cases
MAX_ITEMS = 1000
PASSWORD = "long enough pw"
BUSYBOX = "jobsys/busybox:local"
OK_STEP = {"kind": "docker", "image": BUSYBOX, "command": ["true"]}
#: ``"json"`` not given: the case sends no JSON body.
NO_JSON = object()


@dataclass(frozen=True)
class Case:
    """One bad request and what it must get: ``status`` and a piece of the message."""

    id: str
    method: str
    path: str
    status: int
    says: str
    json: Any = NO_JSON
    raw: bytes | None = None
    form: dict[str, str] | None = None
    #: Whose bearer token goes with it (a role, or a broken token's name); None: no
    #: Authorization header; "page": the signed-in admin's browser session.
    auth: str | None = "developer"
    csrf: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def job(*steps: Any, **top: Any) -> dict[str, Any]:
    return {"name": "hostile", "steps": list(steps) or [OK_STEP], **top}


def docker(**fields: Any) -> dict[str, Any]:
    return {**OK_STEP, **fields}


def function(**fields: Any) -> dict[str, Any]:
    return {"kind": "function", "function": "math:sqrt", "items": [1, 4], **fields}


def schedule(**fields: Any) -> dict[str, Any]:
    return {"name": "hostile", "cron": "*/5 * * * *", "spec": job(), **fields}


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def submit(id: str, body: Any, status: int, says: str, **extra: Any) -> Case:
    return Case(id, "POST", "/api/jobs", status, says, json=body, **extra)


def submit_raw(id: str, raw: bytes, status: int, says: str, **extra: Any) -> Case:
    return Case(id, "POST", "/api/jobs", status, says, raw=raw, **extra)


def as_admin(id: str, method: str, path: str, status: int, says: str, **extra: Any) -> Case:
    return Case(id, method, path, status, says, auth="admin", **extra)


def page_form(id: str, path: str, says: str, **form: str) -> Case:
    """A form posted from the signed-in admin's page session, with its CSRF token."""
    return Case(id, "POST", path, 400, says, auth="page", csrf=True, form=form or None)


def form_without_csrf(id: str, path: str, says: str, **form: str) -> Case:
    return Case(id, "POST", path, 400, says, auth="page", form=form or None)


def new_user(id: str, says: str, **body: Any) -> Case:
    return Case(id, "POST", "/api/users", 400, says, json=body, auth="admin")


def new_schedule(id: str, body: Any, says: str) -> Case:
    return Case(id, "POST", "/api/schedules", 400, says, json=body, auth="admin")


CASES = [
    # -- malformed JSON ------------------------------------------------------
    submit_raw("not-json", b"{not json", 400, "malformed JSON"),
    submit_raw("empty-body", b"", 400, "send a JSON object"),
    submit_raw("truncated", b'{"name": "x", "steps": [', 400, "malformed JSON"),
    submit_raw("trailing-garbage", b'{"name": "x"} and more', 400, "malformed JSON"),
    submit_raw("single-quotes", b"{'name': 'x'}", 400, "malformed JSON"),
    submit_raw("not-utf8", b'{"name": "\xff\xfe"}', 400, "can't decode"),
    submit_raw("5000-digit-number", b'{"name": ' + b"9" * 5000 + b"}", 400, "4300 digits"),
    submit_raw("nan", b'{"steps": [{"kind": "docker", "timeout_s": NaN}]}', 400, "give a number"),
    submit_raw("nul-in-text", b'{"name": "a\\u0000b", "steps": []}', 400, "NUL characters"),
    submit_raw("lone-surrogate", b'{"name": "\\ud800", "steps": []}', 400, "lone UTF-16 surrogate"),
    submit_raw(
        "gzip-damaged",
        b"\x1f\x8b\x08garbage",
        400,
        "gzip body is damaged",
        headers={"Content-Encoding": "gzip"},
    ),
    submit_raw(
        "gzip-cut-short",
        gzip.compress(json.dumps(job()).encode())[:-8],
        400,
        "cut short",
        headers={"Content-Encoding": "gzip"},
    ),
    submit_raw(
        "unknown-encoding", b"{}", 400, "'br' is not supported", headers={"Content-Encoding": "br"}
    ),
    submit("body-is-a-list", [job()], 400, "send a JSON object with 'name' and 'steps'"),
    submit("body-is-a-string", "run it", 400, "send a JSON object with 'name' and 'steps'"),
    submit("body-is-null", None, 400, "send a JSON object"),
    # -- wrong types and values ------------------------------------------------
    submit("name-not-text", job(name=123), 400, "name: give a non-empty name"),
    submit("steps-not-a-list", {"name": "x", "steps": "all of them"}, 400, "non-empty list"),
    submit("no-steps", {"name": "x", "steps": []}, 400, "non-empty list of steps"),
    submit("step-not-object", job(5), 400, "each step must be an object"),
    submit("unknown-kind", job({"kind": "ftp"}), 400, "unknown step kind 'ftp'"),
    submit("command-numbers", job(docker(command=[1, 2])), 400, "non-empty list of strings"),
    submit("command-unclosed-quote", job(docker(command="echo 'hi")), 400, "No closing quotation"),
    submit("env-a-list", job(docker(env=["A=1"])), 400, "give an object of NAME"),
    submit("env-bad-name", job(docker(env={"1A": "x"})), 400, "not starting with a digit"),
    submit("env-value-object", job(docker(env={"A": {"b": 1}})), 400, "name a secret as"),
    submit("env-value-list", job(docker(env={"A": [1]})), 400, "values are strings"),
    submit("env-no-such-secret", job(docker(env={"A": {"secret": "nope"}})), 400, "no secret"),
    submit("timeout-text", job(docker(timeout_s="10")), 400, "timeout_s: give a number"),
    submit("timeout-too-long", job(docker(timeout_s=10**9)), 400, "at most 86400"),
    submit("retries-fraction", job(docker(retries=1.5)), 400, "give a whole number"),
    submit("retries-too-many", job(docker(retries=99)), 400, "from 0 to 10"),
    submit("cpus-negative", job(docker(cpus=-1)), 400, "above 0"),
    submit("mem-limit-garbage", job(docker(mem_limit="lots")), 400, "give a size"),
    submit("tags-numbers", job(tags=[1]), 400, "give a list of tags"),
    submit("tag-with-spaces", job(tags=["bad tag!"]), 400, "is not a tag"),
    submit("too-many-steps", job(*[OK_STEP] * 51), 400, "at most 50 steps"),
    submit("function-not-import-path", job(function(function="os.system")), 400, "import path"),
    submit("pickle-not-base64", job(function(function={"$pickle": "!!"})), 400, "base64"),
    submit("chunk-size-zero", job(function(chunk_size=0)), 400, "from 1 to"),
    submit("tolerate-yes", job(function(tolerate_failures="yes")), 400, "true or false"),
    # -- unknown fields --------------------------------------------------------
    submit("unknown-top-field", job(owner="root"), 400, "owner: unknown field"),
    submit("priority-too-high", job(priority=99), 400, "priority: give a whole number from 0 to 9"),
    submit(
        "soft-limit-past-hard",
        job(function(soft_time_limit_s=10, time_limit_s=5)),
        400,
        "shorter than time_limit_s",
    ),
    submit("unknown-step-field", job(docker(workdir="/")), 400, "workdir: unknown field"),
    # -- huge payloads and deep nesting ---------------------------------------
    submit_raw(
        "over-the-size-limit", b"[" + b"1," * LIMIT + b"1]", 413, "JOBSYS_MAX_PAYLOAD_BYTES"
    ),
    submit_raw(
        "gzip-bomb",
        gzip.compress(b" " * (50 * LIMIT)),
        413,
        "inflated, the request is over",
        headers={"Content-Encoding": "gzip"},
    ),
    # a route that carries no spec takes 64 KiB (JOBSYS_MAX_JSON_BODY_BYTES), inflated too
    as_admin(
        "token-body-over-64-kib",
        "POST",
        "/api/tokens",
        413,
        "JOBSYS_MAX_JSON_BODY_BYTES",
        raw=json.dumps({"name": "t", "role": "viewer", "pad": "x" * 70_000}).encode(),
    ),
    as_admin(
        "user-gzip-over-64-kib",
        "POST",
        "/api/users",
        413,
        "inflated, the request is over 65536 bytes",
        raw=gzip.compress(b" " * 100_000 + b"{}"),
        headers={"Content-Encoding": "gzip"},
    ),
    Case(
        "cancel-body-over-64-kib",
        "POST",
        "/api/jobs/{job}/cancel",
        413,
        "JOBSYS_MAX_JSON_BODY_BYTES",
        raw=b" " * 70_000,
    ),
    Case(
        "render-thousands-of-variables",
        "POST",
        "/api/catalog/echo/render",
        400,
        "this request names 5,000: send only the template's variables",
        json={"variables": {f"v{i}": 1 for i in range(5000)}},
        auth="viewer",
    ),
    submit(
        "hundreds-of-bad-fields",
        job(docker(**{f"bogus{i}": 1 for i in range(300)})),
        400,
        "; and 250 more fields",
    ),
    submit("too-many-items", job(function(items=[0] * (MAX_ITEMS + 1))), 400, "at most 1000 items"),
    submit_raw("nested-100000-deep", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    submit("item-nested-900-deep", job(function(items=[deep(900)])), 400, "nest too deeply"),
    # -- Docker steps: allow-list, privileges, host access ----------------------
    submit("image-not-allowed", job(docker(image="ubuntu:22.04")), 400, "allowed: jobsys/*"),
    submit(
        "image-other-registry", job(docker(image="docker.io/library/busybox")), 400, "not allowed"
    ),
    submit("image-dot-dot", job(docker(image="jobsys/../../evil")), 400, "image reference"),
    submit("image-upper-case", job(docker(image="JOBSYS/Busybox")), 400, "image reference"),
    submit("privileged", job(docker(privileged=True)), 400, "runs no privileged"),
    submit("host-volumes", job(docker(volumes={"/": {"bind": "/host"}})), 400, "as 'mounts'"),
    submit("host-mounts", job(docker(mounts=["/var/run/docker.sock:/s"])), 400, "host mounts"),
    submit("host-network-mode", job(docker(network_mode="host")), 400, "give 'network'"),
    submit("host-network", job(docker(network="host")), 400, "or 'bridge'"),
    submit("bridge-not-allowed", job(docker(network="bridge")), 400, "ALLOW_NETWORK"),
    submit("cap-add", job(docker(cap_add=["SYS_ADMIN"])), 400, "capabilities"),
    submit("host-devices", job(docker(devices=["/dev/sda"])), 400, "host devices"),
    submit("host-pid", job(docker(pid_mode="host")), 400, "host's namespaces"),
    submit("security-opt", job(docker(security_opt=["seccomp=unconfined"])), 400, "security"),
    # -- templates: path traversal and injection --------------------------------
    Case("template-traversal", "GET", "/api/catalog/..%2F..%2Fetc%2Fpasswd", 404, "not found"),
    Case("template-dot-dot", "POST", "/api/catalog/../start", 404, "no template '..'", json={}),
    Case(
        "template-encoded-traversal",
        "POST",
        "/api/catalog/%2e%2e%2f%2e%2e%2fetc%2fpasswd/start",
        404,
        "not found",
        json={"variables": {}},
    ),
    Case(
        "template-variable-injection",
        "POST",
        "/api/catalog/echo/start",
        400,
        "variables.message",
        json={"variables": {"message": "$(rm -rf /)"}},
    ),
    Case(
        "template-unknown-variable",
        "POST",
        "/api/catalog/echo/start",
        400,
        "has no variable 'image'",
        json={"variables": {"image": "ubuntu"}},
    ),
    Case(
        "template-body-shape",
        "POST",
        "/api/catalog/echo/start",
        400,
        'send {"variables"',
        json={"message": "hi"},
    ),
    new_schedule(
        "schedule-template-traversal",
        {"name": "t", "cron": "* * * * *", "template": "../../etc/passwd"},
        "no template '../../etc/passwd'",
    ),
    Case(
        "page-template-traversal",
        "GET",
        "/catalog/..%2F..%2Fetc%2Fpasswd",
        404,
        "not found",
        auth="page",
    ),
    # -- cron garbage and schedule values --------------------------------------
    new_schedule("cron-three-fields", schedule(cron="* * *"), "has 3 fields; give 5"),
    new_schedule("cron-minute-61", schedule(cron="61 * * * *"), "not a valid cron line"),
    new_schedule("cron-february-31", schedule(cron="0 0 31 2 *"), "never fires"),
    new_schedule("cron-at-reboot", schedule(cron="@reboot"), "unknown alias"),
    new_schedule("cron-shell", schedule(cron="$(reboot)"), "has 1 fields"),
    new_schedule("cron-a-number", schedule(cron=5), "cron line as a string"),
    new_schedule("cron-and-interval", schedule(interval_s=60), "not both"),
    new_schedule("interval-zero", {**schedule(interval_s=0), "cron": None}, "at least 1"),
    new_schedule("interval-huge", {**schedule(interval_s=1e300), "cron": None}, "(a year)"),
    as_admin(
        "interval-nan",
        "POST",
        "/api/schedules",
        400,
        "whole number of seconds",
        raw=b'{"name": "n", "interval_s": NaN, "spec": {"name": "x", "steps": []}}',
    ),
    new_schedule("timezone-unknown", schedule(timezone="Mars/Olympus"), "unknown time zone"),
    new_schedule("timezone-traversal", schedule(timezone="../../etc/passwd"), "unknown time zone"),
    new_schedule("timezone-a-number", schedule(timezone=5), "time zone as text"),
    new_schedule("catch-up-unknown", schedule(catch_up="sometimes"), "is not one of skip"),
    new_schedule("schedule-unknown-field", schedule(owner="root"), "unknown fields owner"),
    new_schedule(
        "schedule-privileged-step", schedule(spec=job(docker(privileged=True))), "privileged"
    ),
    new_schedule(
        "schedule-image-not-allowed", schedule(spec=job(docker(image="evil/miner"))), "not allowed"
    ),
    # -- bad tokens and missing rights -----------------------------------------
    Case("no-token", "GET", "/api/jobs", 401, "no token", auth=None),
    Case(
        "empty-bearer",
        "GET",
        "/api/jobs",
        401,
        "no token",
        auth=None,
        headers={"Authorization": "Bearer "},
    ),
    Case(
        "basic-auth",
        "GET",
        "/api/jobs",
        401,
        "Bearer",
        auth=None,
        headers={"Authorization": "Basic YWRtaW46YWRtaW4="},
    ),
    Case("garbage-token", "GET", "/api/jobs", 401, "malformed token", auth="garbage"),
    Case("unknown-token", "GET", "/api/jobs", 401, "unknown or revoked", auth="unknown"),
    Case("revoked-token", "GET", "/api/jobs", 401, "unknown or revoked", auth="revoked"),
    Case("wrong-secret", "GET", "/api/jobs", 401, "unknown or revoked", auth="wrong-secret"),
    Case("disabled-users-token", "GET", "/api/jobs", 401, "disabled", auth="disabled-user"),
    Case("bad-token-metrics", "GET", "/metrics", 401, "malformed token", auth="garbage"),
    Case("bad-token-flower", "GET", "/flower/api/workers", 401, "malformed", auth="garbage"),
    submit("viewer-submits", job(), 403, "'submit' right", auth="viewer"),
    submit(
        "operator-submits-code",
        job(function(function={"$pickle": "AAAA"})),
        403,
        "submit",
        auth="operator",
    ),
    Case(
        "operator-schedules",
        "POST",
        "/api/schedules",
        403,
        "'schedule' right",
        json=schedule(),
        auth="operator",
    ),
    Case(
        "developer-makes-tokens",
        "POST",
        "/api/tokens",
        403,
        "'admin' right",
        json={"name": "mine", "role": "admin"},
    ),
    Case(
        "developer-edits-users",
        "PATCH",
        "/api/users/ada",
        403,
        "'admin' right",
        json={"role": "admin"},
    ),
    # -- query strings ------------------------------------------------------------
    Case("page-not-a-number", "GET", "/api/jobs?page=two", 400, "give a whole number"),
    Case("page-huge", "GET", "/api/jobs?page=" + "9" * 30, 400, "at most 1,000,000,000"),
    Case("since-garbage", "GET", "/api/jobs?since=yesterday", 400, "ISO date"),
    Case("status-unknown", "GET", "/api/jobs?status=exploded", 400, "use one of queued"),
    Case("owner-nul", "GET", "/api/jobs?owner=a%00", 400, "NUL characters"),
    Case("logs-tail-zero", "GET", "/api/jobs/{job}/logs?tail=0", 400, "from 1 to"),
    Case("audit-per-page", "GET", "/api/audit?per_page=100000", 400, "1 to 500", auth="admin"),
    Case("job-id-nul", "GET", "/api/jobs/%00", 400, "NUL characters"),
    # -- users, tokens, state -------------------------------------------------------
    new_user("user-unknown-role", "unknown role 'god'", name="zed", password=PASSWORD, role="god"),
    new_user("user-short-password", "at least 8", name="zed", password="short", role="viewer"),
    new_user("user-name-null", "give text", name=None, password=PASSWORD, role="viewer"),
    new_user(
        "user-exists", "a user named 'ada' exists", name="ada", password=PASSWORD, role="viewer"
    ),
    as_admin(
        "user-disabled-text",
        "PATCH",
        "/api/users/ada",
        400,
        "true or false",
        json={"disabled": "yes"},
    ),
    as_admin(
        "user-password-number",
        "PATCH",
        "/api/users/ada",
        400,
        "give text",
        json={"password": 12345678},
    ),
    as_admin(
        "user-unknown", "PATCH", "/api/users/nobody", 404, "no user named", json={"role": "viewer"}
    ),
    as_admin(
        "token-unknown-role",
        "POST",
        "/api/tokens",
        400,
        "unknown role 'root'",
        json={"name": "bot", "role": "root"},
    ),
    as_admin(
        "token-id-huge", "POST", "/api/tokens/" + "9" * 25 + "/revoke", 404, "no token with id"
    ),
    Case("cancel-finished-job", "POST", "/api/jobs/{job}/cancel", 409, "only queued or running"),
    Case("resume-finished-job", "POST", "/api/jobs/{job}/resume", 409, "only failed or cancelled"),
    Case("rerun-unknown-job", "POST", "/api/jobs/nope/rerun", 404, "no job with id 'nope'"),
    submit(
        "idempotency-key-blank", job(), 400, "Idempotency-Key", headers={"Idempotency-Key": " "}
    ),
    submit(
        "idempotency-key-reused",
        job(name="another"),
        422,
        "another request",
        headers={"Idempotency-Key": "seeded"},
    ),
    Case("method-not-allowed", "PUT", "/api/jobs", 405, "method is not allowed", json={}),
    Case("no-such-route", "GET", "/api/nothing-here", 404, "not found"),
    # -- HTML forms: no CSRF token, and bad fields with one -----------------------
    form_without_csrf(
        "form-submit-no-csrf", "/jobs/new", "CSRF token is missing", image=BUSYBOX, command="true"
    ),
    form_without_csrf(
        "form-schedule-no-csrf", "/schedules", "CSRF token is missing", name="x", cron="* * * * *"
    ),
    form_without_csrf(
        "form-add-user-no-csrf",
        "/users",
        "CSRF token is missing",
        name="mallory",
        password=PASSWORD,
        role="admin",
    ),
    form_without_csrf("form-cancel-no-csrf", "/jobs/{job}/cancel", "CSRF token"),
    form_without_csrf("form-revoke-no-csrf", "/tokens/1/revoke", "CSRF token"),
    form_without_csrf("form-delete-schedule-no-csrf", "/schedules/seeded/delete", "CSRF token"),
    form_without_csrf("form-start-template-no-csrf", "/catalog/echo", "CSRF token", times="2"),
    Case(
        "form-login-no-csrf",
        "POST",
        "/login",
        400,
        "reload the page",
        auth=None,
        form={"name": "ada", "password": "long enough pw"},
    ),
    page_form("form-image-not-allowed", "/jobs/new", "not allowed", image="ubuntu", command="true"),
    page_form(
        "form-env-line",
        "/jobs/new",
        "write NAME=value",
        image=BUSYBOX,
        command="true",
        env="no equals sign",
    ),
    page_form(
        "form-nul-name", "/jobs/new", "NUL characters", name="a\x00b", image=BUSYBOX, command="true"
    ),
    page_form(
        "form-schedule-garbage",
        "/schedules",
        "never fires",
        name="x",
        cron="0 0 30 2 *",
        spec=json.dumps(job()),
    ),
    page_form(
        "form-schedule-spec-json",
        "/schedules",
        "not valid JSON",
        name="x",
        cron="* * * * *",
        spec="{nope",
    ),
]


@dataclass
class Door:
    """The app under attack, its collaborators, and the callers' credentials."""

    app: Flask
    ctx: Context
    dispatcher: MemoryDispatcher
    tokens: dict[str, str]
    page: FlaskClient
    csrf: str
    job_id: str


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Both databases: text PostgreSQL cannot store (NUL) passed SQLite silently."""
    if request.param == "sqlite":
        yield ""  # the default file in the data folder
        return
    require_postgres()
    schema = f"hostile_{uuid.uuid4().hex[:10]}"
    yield postgres_schema_url(schema)
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Door]:
    settings = make_settings(
        tmp_path_factory.mktemp("hostile"),
        database_url=database_url,
        catalog_dir=str(EXAMPLES),
        max_payload_bytes=LIMIT,
        max_items=MAX_ITEMS,
    )
    dispatcher = MemoryDispatcher()
    ctx = make_context(settings, dispatcher)
    service.reload_catalog(ctx, SYSTEM)
    tokens = {
        role: service.create_token(ctx, SYSTEM, name=role, role=role).token
        for role in ("viewer", "operator", "developer", "admin")
    }
    service.add_user(ctx, SYSTEM, name="ada", password="long enough pw", role="developer")
    service.add_user(ctx, SYSTEM, name="gone", password="long enough pw", role="developer")
    tokens["disabled-user"] = service.create_token(
        ctx, SYSTEM, name="gone", role="developer", user="gone"
    ).token
    service.update_user(ctx, SYSTEM, "gone", disabled=True)
    revoked = service.create_token(ctx, SYSTEM, name="old", role="admin")
    tokens["revoked"] = revoked.token
    service.revoke_token(ctx, SYSTEM, _token_id(ctx, "old"))
    tokens["wrong-secret"] = tokens["developer"].rsplit(".", 1)[0] + ".not-the-secret"
    tokens["unknown"] = "jst_000000000000.no-such-token"
    tokens["garbage"] = "let-me-in"
    dev = Principal("developer", "developer")
    done = service.submit_job(ctx, dev, job(name="finished"))
    with ctx.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == done.id).values(status=JobStatus.COMPLETED))
    once = service.Idempotency.of("seeded", "POST /api/jobs", job())
    service.submit_job(ctx, dev, job(), once=once)
    service.create_schedule(ctx, SYSTEM, schedule(name="seeded"))
    app = create_app(context=ctx)
    page = app.test_client()
    csrf = _csrf(page, "/login")
    assert (
        page.post("/login", data={"token": tokens["admin"], "csrf_token": csrf}).status_code == 302
    )
    csrf = _csrf(page, "/jobs/new")  # signing in starts a new session, with a new token
    yield Door(app, ctx, dispatcher, tokens, page, csrf, done.id)
    ctx.sessions.kw["bind"].dispose()


def _token_id(ctx: Context, name: str) -> int:
    with ctx.sessions() as session:
        return int(session.scalar(select(Token.id).where(Token.name == name)))


def _csrf(client: FlaskClient, path: str) -> str:
    return csrf_of(client.get(path).get_data(as_text=True))


def state(ctx: Context, dispatcher: MemoryDispatcher) -> dict[str, Any]:
    """Everything a bad request could have changed: row counts, each row that
    says who may do what, and what the broker was handed."""
    with ctx.sessions() as session:
        counted = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Job, Step, Schedule, ScheduleRun, User, Token, IdempotencyKey)
        }
        return {
            **counted,
            "catalog": sorted(session.scalars(select(CatalogEntry.name))),
            "jobs": sorted(session.execute(select(Job.id, Job.status))),
            "users": sorted(session.execute(select(User.name, User.role, User.disabled_at))),
            "tokens": sorted(session.execute(select(Token.id, Token.role, Token.revoked_at))),
            "schedules": sorted(
                session.execute(select(Schedule.name, Schedule.enabled, Schedule.next_fire_at))
            ),
            "queues": dispatcher.queue_lengths(),
            "published": len(dispatcher.published),
            "cancelled": sorted(dispatcher.cancelled),
        }


def send(door: Door, case: Case) -> tuple[int, str, bool]:
    """The status, the message (JSON ``message`` or the page's text) and whether it
    was JSON."""
    headers = dict(case.headers)
    client = door.page if case.auth == "page" else door.app.test_client()
    if case.auth not in (None, "page"):
        headers = {**bearer_of(door.tokens[case.auth]), **headers}
    kwargs: dict[str, Any] = {"headers": headers}
    if case.raw is not None:
        headers.setdefault("Content-Type", "application/json")
        kwargs["data"] = case.raw
    elif case.json is not NO_JSON:
        kwargs["json"] = case.json
    elif case.form is not None or case.csrf:
        kwargs["data"] = {**(case.form or {}), **({"csrf_token": door.csrf} if case.csrf else {})}
    response = client.open(case.path.format(job=door.job_id), method=case.method, **kwargs)
    if response.is_json:
        return response.status_code, str(response.get_json().get("message", "")), True
    return response.status_code, html.unescape(response.get_data(as_text=True)), False


def test_the_corpus_is_big_enough_and_named_once() -> None:
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_request_gets_its_4xx_says_why_and_changes_nothing(door: Door, case: Case) -> None:
    before = state(door.ctx, door.dispatcher)
    status, message, is_json = send(door, case)
    assert status == case.status, message[:500]
    assert case.says.lower() in message.lower(), message[:500]
    if case.path.startswith("/api/") or case.auth not in (None, "page"):
        assert is_json, "API callers get JSON errors"
    assert state(door.ctx, door.dispatcher) == before


def test_the_state_check_sees_a_change(door: Door) -> None:
    """The harness checked: a good request through the same door changes the
    state, so the comparison above would have seen a change."""
    before = state(door.ctx, door.dispatcher)
    ok = replace(CASES[0], id="good", raw=json.dumps(job()).encode())
    assert send(door, ok)[0] == 202
    assert state(door.ctx, door.dispatcher) != before
