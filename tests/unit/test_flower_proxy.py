"""The /flower proxy against a fake Flower: a real HTTP server on a local port
that records the exact request target it received, so a test sees what
httpx actually sent (a mock of httpx would not show its path rewriting).

Each class of action (reading, cancelling, everything else) with each role,
positive and negative; and paths that try to reach one route while looking
like another (dot segments, encoded and double-encoded ones, empty segments),
which are refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import TypeVar

import httpx
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import PermissionDenied, SpecError
from tests.support.auth import bearer_of, csrf_of, sign_in
from tests.support.fixtures import make_context, make_settings
from tests.support.http_server import serving
from tests.support.specs import docker_spec
from webui import create_app, flower_proxy
from webui.flower_proxy import ROUTES, right_for, upstream_url

ROLES = ("viewer", "operator", "developer", "admin")
ADMIN = Principal("ada", "admin")
WORKER = "python@host"
T = TypeVar("T")


@dataclass
class FakeFlower:
    """What the fake Flower received: (method, raw request target) per request,
    and the body of each."""

    url: str
    seen: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [path for _, path in self.seen]


@pytest.fixture(scope="module")
def fake_flower() -> Iterator[FakeFlower]:
    fake = FakeFlower(url="")

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fake.bodies.append(self.rfile.read(length))
            fake.seen.append((self.command, self.path))  # the raw request target
            body = json.dumps({"flower": True, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as base:
        fake.url = f"{base}/flower"
        yield fake


@dataclass
class World:
    """One database, app and set of tokens for the module (a token costs a
    scrypt hash, a database its migrations); tests make their own jobs."""

    ctx: Context
    dispatcher: MemoryDispatcher
    client: FlaskClient
    tokens: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def world(fake_flower: FakeFlower, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("flower-proxy")
    settings = make_settings(tmp, docker_images=("jobsys/*",), flower_url=fake_flower.url)
    dispatcher = MemoryDispatcher()
    ctx = make_context(settings, dispatcher)
    # a catalog with a template whose jobs only an admin may stop, and an open one
    folder = tmp / "catalog"
    for name, roles in (("guarded", "roles: {stop: [admin]}\n"), ("open", "")):
        (folder / name).mkdir(parents=True)
        (folder / name / "job.yaml").write_text(
            "steps: [{kind: docker, image: jobsys/busybox:local, command: [sleep, '60']}]\n" + roles
        )
    service.reload_catalog(ctx, ADMIN, folder)
    tokens = {}
    for role in ROLES:
        token = service.create_token(
            ctx, ADMIN, name=f"{role}-token", role=role, global_token=True
        ).token
        tokens[role] = bearer_of(token)
    return World(ctx, dispatcher, create_app(context=ctx).test_client(), tokens)


@pytest.fixture
def flower(fake_flower: FakeFlower, world: World) -> FakeFlower:
    fake_flower.seen.clear()
    fake_flower.bodies.clear()
    world.dispatcher.cancelled.clear()
    return fake_flower


@pytest.fixture
def client(world: World, flower: FakeFlower) -> FlaskClient:
    return world.client


@pytest.fixture
def tokens(world: World) -> dict[str, dict[str, str]]:
    return world.tokens


@pytest.fixture
def proxied(world: World) -> Context:
    return world.ctx


@pytest.fixture
def guarded(world: World) -> Context:
    return world.ctx


@pytest.fixture
def dispatcher(world: World) -> MemoryDispatcher:
    return world.dispatcher


def send(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    """Through the test client, with the path exactly as given (no client-side clean-up)."""
    answer = client.open(path, method=method, headers=headers)
    return httpx.Response(answer.status_code, headers=dict(answer.headers), content=answer.data)


def each_role_sends(requests: list[tuple[str, str]]) -> Callable[[T], T]:
    """Run a test once for each role and each (method, path) of ``requests``; its
    ``answer`` fixture is what the proxy answered that role's request."""

    def mark(test: T) -> T:
        return pytest.mark.parametrize("role", ROLES)(
            pytest.mark.parametrize(("method", "path"), requests)(test)
        )

    return mark


@pytest.fixture
def answer(
    client: FlaskClient,
    tokens: dict[str, dict[str, str]],
    flower: FakeFlower,
    role: str,
    method: str,
    path: str,
) -> httpx.Response:
    """``role``'s ``method`` on ``path``, sent once Flower's record is cleared."""
    return send(client, method, path, tokens[role])


# ---- the path: refused unless it names one route plainly --------------------------------

TRAVERSALS = [
    # the reported one: an operator's revoke that httpx turned into pool control
    f"/flower/api/task/revoke/../../worker/pool/grow/{WORKER}?n=1",
    f"/flower/api/task/revoke/%2e%2e/%2e%2e/worker/pool/grow/{WORKER}?n=1",
    f"/flower/api/task/revoke/%2E%2E/%2E%2E/worker/shutdown/{WORKER}",
    "/flower/api/task/revoke/.%2e/.%2E/task/send-task/jobsys.reap_orphans",
    "/flower/api/task/abort/../../task/apply/jobsys.reap_orphans",
    # double-encoded: decoded once by us, once more by someone downstream
    f"/flower/api/task/revoke/%252e%252e/%252e%252e/worker/pool/grow/{WORKER}",
    "/flower/api/task/revoke/x%252fy",
    # encoded slashes and backslashes hide a segment boundary
    f"/flower/api/task/revoke/..%2f..%2fworker%2fpool%2fgrow%2f{WORKER}",
    "/flower/api/task/revoke/x%2Fy",
    "/flower/api/task/revoke/x%5cy",
    "/flower/api/task/revoke/x\\y",
    # a lone dot, and empty segments
    "/flower/./api/workers",
    "/flower/api/workers/.",
    "/flower/api//workers",
    f"/flower/api/task/revoke//../worker/pool/grow/{WORKER}",
    "/flower/api/workers/",
    # characters that must come encoded, and encoded control characters
    "/flower/api/task/revoke/x%00y",
    "/flower/api/task/info/a b",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_a_path_that_could_name_another_route_is_refused_for_every_role(
    client: FlaskClient, tokens: dict[str, dict[str, str]], flower: FakeFlower, path: str
) -> None:
    for role in ROLES:
        for method in ("GET", "POST"):
            answer = send(client, method, path, tokens[role])
            assert answer.status_code == 400, (role, method, path, answer.text)
            body = answer.json()
            assert body["error"] == "SpecError" and "path" in body["fields"]
    assert flower.seen == []  # nothing reached Flower


def test_a_leading_empty_segment_matches_no_route(
    client: FlaskClient, tokens: dict[str, dict[str, str]], flower: FakeFlower
) -> None:
    """``/flower//x``: Flask's path converter cannot start with a slash, so no
    route matches (404); nothing is sent either way."""
    for method in ("GET", "POST"):
        answer = send(client, method, "/flower//api/workers", tokens["admin"])
        assert answer.status_code == 404
    assert flower.seen == []


def test_the_refusal_says_what_is_wrong(
    client: FlaskClient, tokens: dict[str, dict[str, str]]
) -> None:
    def why(path: str) -> str:
        answer = send(client, "POST", path, tokens["admin"])
        assert answer.status_code == 400
        return str(answer.json()["fields"]["path"])

    assert "'..' segment" in why("/flower/api/task/revoke/../../worker/pool/grow/x")
    assert "encoded '.'" in why("/flower/api/task/revoke/%2e%2e/x")
    assert "encoded" in why("/flower/api/task/revoke/%252e%252e/x")
    assert "encoded" in why("/flower/api/task/revoke/a%2fb")
    assert "empty segment" in why("/flower/api//workers")
    assert "'.' segment" in why("/flower/./api/workers")


def test_a_sign_in_comes_before_the_path_check_only_for_nothing(
    client: FlaskClient, flower: FakeFlower
) -> None:
    """Without credentials a bad path is still 400 (it is refused first), a good one
    sends a page visitor to the sign-in page; neither reaches Flower."""
    bad = client.post("/flower/api/task/revoke/../../worker/pool/grow/x")
    assert bad.status_code == 400
    assert client.get("/flower/api/workers").status_code == 302
    assert flower.seen == []


# ---- view: reading pages and the GET API -----------------------------------------------

READING = [
    ("GET", "/flower/"),
    ("GET", "/flower/workers"),
    ("GET", f"/flower/worker/{WORKER}"),
    ("GET", "/flower/worker/python%40host"),  # as Flower's page links it
    ("GET", "/flower/tasks"),
    ("GET", "/flower/task/0f0f0f0f-0000-0000-0000-000000000000"),
    ("POST", "/flower/tasks/datatable"),  # the tasks page asks for its rows by POST
    ("GET", "/flower/broker"),
    ("GET", "/flower/api/workers?refresh=1"),
    ("GET", "/flower/api/tasks?limit=5"),
    ("GET", "/flower/api/task/types"),
    ("GET", "/flower/api/queues/length"),
    ("GET", "/flower/api/task/info/0f0f0f0f-0000-0000-0000-000000000000"),
    ("GET", "/flower/api/task/result/0f0f0f0f-0000-0000-0000-000000000000"),
    ("GET", "/flower/metrics"),
    ("GET", "/flower/healthcheck"),
    ("GET", "/flower/static/css/flower.css"),
]


@each_role_sends(READING)
def test_every_role_reads_flower(
    answer: httpx.Response, flower: FakeFlower, method: str, path: str
) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["flower"] is True
    # Flower received exactly the path whose right was checked
    assert flower.seen == [(method, path)]


# ---- admin: everything else, including routes the table does not know -------------------

CHANGING = [
    ("POST", f"/flower/api/worker/pool/grow/{WORKER}?n=1"),
    ("POST", f"/flower/api/worker/pool/shrink/{WORKER}?n=1"),
    ("POST", f"/flower/api/worker/pool/autoscale/{WORKER}?min=1&max=2"),
    ("POST", f"/flower/api/worker/pool/restart/{WORKER}"),
    ("POST", f"/flower/api/worker/shutdown/{WORKER}"),
    ("POST", f"/flower/api/worker/queue/add-consumer/{WORKER}?queue=q"),
    ("POST", f"/flower/api/worker/queue/cancel-consumer/{WORKER}?queue=q"),
    ("POST", "/flower/api/task/apply/jobsys.reap_orphans"),
    ("POST", "/flower/api/task/async-apply/jobsys.reap_orphans"),
    ("POST", "/flower/api/task/send-task/jobsys.reap_orphans"),
    ("POST", "/flower/api/task/timeout/jobsys.reap_orphans?soft=1"),
    ("POST", "/flower/api/task/rate-limit/jobsys.reap_orphans?ratelimit=1"),
    ("GET", "/flower/api/some-future-route"),  # missing from the table: admin
    ("POST", "/flower/api/workers"),  # a reading route, asked to change something
    ("GET", "/flower/logout"),
    ("DELETE", "/flower/api/tasks"),
]


@each_role_sends(CHANGING)
def test_everything_else_needs_admin(
    answer: httpx.Response, flower: FakeFlower, role: str, method: str, path: str
) -> None:
    if role == "admin":
        assert answer.status_code == 200, answer.text
        assert flower.seen == [(method, path)]
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["right"] == "admin"
        assert flower.seen == []


# ---- cancel: revoke, terminate, abort go through the job's Cancel -----------------------


def started(ctx: Context, dispatcher: MemoryDispatcher, template: str | None = None) -> tuple:
    """A job and the Celery task id of its running step."""
    if template is None:
        job = service.submit_job(ctx, Principal("dev", "developer"), docker_spec("sleep 60"))
    else:
        job = service.start_template(ctx, Principal("otto", "operator"), template, {})
    return job.id, dispatcher.published[-1].task_id


@pytest.fixture
def running(proxied: Context, dispatcher: MemoryDispatcher, flower: FakeFlower) -> tuple[str, str]:
    """A job of no template, once Flower's record is cleared: ``started``."""
    return started(proxied, dispatcher)


#: (role, template, path with ``{task}``) -> (job id, task id, the proxy's answer)
Revoke = Callable[[str, str, str], tuple[str, str, httpx.Response]]


@pytest.fixture
def revoke(
    client: FlaskClient,
    tokens: dict[str, dict[str, str]],
    flower: FakeFlower,
    guarded: Context,
    dispatcher: MemoryDispatcher,
) -> Revoke:
    """Start a job of a template, then post ``path`` for its running task as ``role``."""

    def as_role(role: str, template: str, path: str) -> tuple[str, str, httpx.Response]:
        job_id, task_id = started(guarded, dispatcher, template)
        return job_id, task_id, send(client, "POST", path.format(task=task_id), tokens[role])

    return as_role


CANCELLING = [
    "/flower/api/task/revoke/{task}",
    "/flower/api/task/revoke/{task}?terminate=true",
    "/flower/api/task/revoke/{task}?terminate=true&signal=SIGKILL",
    "/flower/api/task/abort/{task}",
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("how", CANCELLING)
def test_a_revoke_cancels_the_job_as_its_cancel_button_does(
    revoke: Revoke,
    flower: FakeFlower,
    guarded: Context,
    dispatcher: MemoryDispatcher,
    role: str,
    how: str,
) -> None:
    job_id, task_id, answer = revoke(role, "open", how)
    job = service.get_job(guarded, ADMIN, job_id)
    if role == "viewer":
        assert answer.status_code == 403 and answer.json()["right"] == "cancel"
        assert job.status == "queued"
    else:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["job_id"] == job_id and body["status"] == "cancelled"
        assert task_id in body["message"]
        assert job.status == "cancelled"
        did = "aborted" if "abort" in how else "terminated" if "terminate" in how else "revoked"
        assert job.error == f"cancelled by {role}-token: task {task_id} {did} through Flower"
        entries, _ = service.list_audit(guarded, ADMIN, action="job.cancel")
        (entry,) = [e for e in entries if e.target == job_id]
        assert (entry.actor, entry.role) == (f"{role}-token", role)
        assert dispatcher.cancelled == {job_id}  # the jobsys cancel, not Celery's revoke
    assert flower.seen == []  # a jobsys task's revoke never goes to Flower


@pytest.mark.parametrize("role", ROLES)
def test_a_template_that_narrows_stop_applies_to_a_revoke(
    revoke: Revoke, flower: FakeFlower, guarded: Context, role: str
) -> None:
    job_id, _, answer = revoke(role, "guarded", "/flower/api/task/revoke/{task}")
    status = service.get_job(guarded, ADMIN, job_id).status
    if role == "admin":
        assert answer.status_code == 200 and status == "cancelled"
    else:
        assert answer.status_code == 403 and status == "queued"
        assert answer.json()["right"] == "cancel"
        if role != "viewer":
            assert "lets only the roles admin stop its jobs" in answer.json()["message"]
    assert flower.seen == []


def test_a_revoke_of_a_finished_job_is_409(
    client: FlaskClient,
    tokens: dict[str, dict[str, str]],
    proxied: Context,
    flower: FakeFlower,
    running: tuple[str, str],
) -> None:
    job_id, task_id = running
    service.cancel_job(proxied, ADMIN, job_id)
    answer = send(client, "POST", f"/flower/api/task/revoke/{task_id}", tokens["operator"])
    assert answer.status_code == 409 and "cancelled" in answer.json()["message"]
    assert flower.seen == []


@pytest.mark.parametrize("role", ROLES)
def test_a_task_outside_jobsys_needs_admin_and_goes_to_flower(
    client: FlaskClient, tokens: dict[str, dict[str, str]], flower: FakeFlower, role: str
) -> None:
    path = "/flower/api/task/revoke/0f0f0f0f-0000-0000-0000-000000000000?terminate=true"
    answer = send(client, "POST", path, tokens[role])
    if role == "admin":
        assert answer.status_code == 200 and answer.json()["flower"] is True
        assert flower.seen == [("POST", path)]
    else:
        assert answer.status_code == 403
        assert answer.json()["right"] == ("cancel" if role == "viewer" else "admin")
        assert flower.seen == []


def test_a_revoke_from_flowers_own_page_reads_its_form(
    client: FlaskClient, tokens: dict[str, dict[str, str]], running: tuple[str, str]
) -> None:
    """Flower's Terminate button posts ``terminate=true`` as a form, not in the query."""
    job_id, task_id = running
    answer = client.post(
        f"/flower/api/task/revoke/{task_id}",
        data={"terminate": "true"},
        headers=tokens["operator"],
    )
    assert answer.status_code == 200 and answer.json["job_id"] == job_id
    assert answer.json["message"].startswith(f"Terminated '{task_id}'")


def test_a_forwarded_revoke_keeps_its_form(
    client: FlaskClient, tokens: dict[str, dict[str, str]], flower: FakeFlower
) -> None:
    """An admin's Terminate of a task outside jobsys: the form was read to see
    ``terminate`` and must still reach Flower (it once arrived empty, a plain revoke)."""
    path = "/flower/api/task/revoke/0f0f0f0f-0000-0000-0000-000000000000"
    answer = client.post(path, data={"terminate": "true"}, headers=tokens["admin"])
    assert answer.status_code == 200 and answer.json["flower"] is True
    assert flower.seen == [("POST", path)]
    assert flower.bodies == [b"terminate=true"]


# ---- HEAD: what GET reads ----------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", [p for m, p in READING if m == "GET"])
def test_head_needs_what_get_needs(
    client: FlaskClient, tokens: dict[str, dict[str, str]], flower: FakeFlower, role: str, path: str
) -> None:
    answer = send(client, "HEAD", path, tokens[role])
    assert answer.status_code == 200, answer.text
    assert flower.seen == [("HEAD", path)]


def test_head_of_a_changing_route_needs_admin(
    client: FlaskClient, tokens: dict[str, dict[str, str]], flower: FakeFlower
) -> None:
    answer = send(client, "HEAD", "/flower/api/some-future-route", tokens["operator"])
    assert answer.status_code == 403
    assert flower.seen == []


# ---- a page session: changes only from our own origin ------------------------------------

ELSEWHERE = [
    # the reported one: a sibling site's page, which the Lax cookie does not stop
    {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.example.com"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example.com"},
    {"Sec-Fetch-Site": "none"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},  # the browser knows better
    # a browser that sends no Sec-Fetch-Site: Origin, else Referer
    {"Origin": "https://evil.example.com"},
    {"Origin": "null"},
    {"Origin": "https://localhost"},  # another scheme is another origin
    {"Origin": "http://localhost:8080"},  # and another port
    {"Origin": "http://localhost.evil.example.com"},
    {"Referer": "https://evil.example.com/flower/tasks"},
    {},  # says nothing about where it came from
]

#: Where a page of this site (the test client's http://localhost) posts from.
OURS = [
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Origin": "http://localhost"},
    {"Origin": "HTTP://LOCALHOST:80"},
    {"Referer": "http://localhost/flower/tasks"},
]


def signed_in(world: World, role: str) -> FlaskClient:
    """A page client (the session cookie, no bearer token) of ``role``."""
    page: FlaskClient = world.client.application.test_client()
    token = service.create_token(
        world.ctx, ADMIN, name=f"page-{role}", role=role, global_token=True
    ).token
    return sign_in(page, token)


@pytest.fixture(scope="module")
def pages(world: World) -> dict[str, FlaskClient]:
    return {role: signed_in(world, role) for role in ("operator", "admin")}


@pytest.fixture
def from_page(
    pages: dict[str, FlaskClient], running: tuple[str, str], where: dict[str, str]
) -> tuple[str, TestResponse]:
    """The operator's page session posts a revoke of a running job's task, with
    the headers ``where`` (the test's parameter) says it came from."""
    job_id, task_id = running
    return job_id, pages["operator"].post(f"/flower/api/task/revoke/{task_id}", headers=where)


@pytest.mark.parametrize("where", ELSEWHERE)
def test_a_revoke_from_another_site_with_the_session_cookie_is_refused(
    from_page: tuple[str, TestResponse],
    proxied: Context,
    dispatcher: MemoryDispatcher,
    flower: FakeFlower,
) -> None:
    """Flower's blueprint takes no CSRF token, and a revoke is answered by us,
    not Flower: it once cancelled the job of whoever's page was open."""
    job_id, answer = from_page
    assert answer.status_code == 403, answer.text
    message = answer.get_data(as_text=True)  # the error page (a page session gets HTML)
    assert "from a page of this site" in message and "bearer token" in message
    assert service.get_job(proxied, ADMIN, job_id).status == "queued"
    assert dispatcher.cancelled == set() and flower.seen == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_forwarded_change_from_another_site_is_refused_too(
    pages: dict[str, FlaskClient], flower: FakeFlower, method: str
) -> None:
    evil = {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.example.com"}
    for path in (f"/flower/api/worker/pool/grow/{WORKER}?n=1", "/flower/tasks/datatable"):
        answer = pages["admin"].open(path, method=method, headers=evil)
        assert answer.status_code == 403, (path, answer.text)
    assert flower.seen == []


@pytest.mark.parametrize("where", OURS)
def test_a_revoke_from_a_page_of_this_site_cancels_the_job(
    from_page: tuple[str, TestResponse], proxied: Context
) -> None:
    job_id, answer = from_page
    assert answer.status_code == 200, answer.text
    assert service.get_job(proxied, ADMIN, job_id).status == "cancelled"


def test_flowers_own_pages_still_post_and_read(
    pages: dict[str, FlaskClient], flower: FakeFlower
) -> None:
    """The tasks page asks for its rows by POST from /flower/tasks; reading
    needs no origin at all."""
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    page = pages["operator"]
    assert page.post("/flower/tasks/datatable", data={"draw": "1"}, headers=same).status_code == 200
    assert page.get("/flower/tasks", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    assert flower.seen == [("POST", "/flower/tasks/datatable"), ("GET", "/flower/tasks")]
    assert flower.bodies[0] == b"draw=1"


def test_a_bearer_token_is_not_asked_where_it_came_from(
    client: FlaskClient,
    tokens: dict[str, dict[str, str]],
    proxied: Context,
    dispatcher: MemoryDispatcher,
) -> None:
    """A browser never adds a bearer token by itself, so a cross-site page cannot forge one."""
    job_id, task_id = started(proxied, dispatcher)
    evil = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example.com"}
    answer = client.post(
        f"/flower/api/task/revoke/{task_id}", headers={**tokens["operator"], **evil}
    )
    assert answer.status_code == 200
    assert service.get_job(proxied, ADMIN, job_id).status == "cancelled"


def test_behind_a_trusted_proxy_the_origin_is_the_one_the_browser_used(
    world: World, proxied: Context, dispatcher: MemoryDispatcher, flower: FakeFlower
) -> None:
    """With JOBSYS_TRUST_PROXY the request's own origin is the forwarded one
    (https://jobs.example.com), not the proxy's hop to us."""
    behind = Context(
        settings=replace(proxied.settings, trust_proxy=True),
        sessions=proxied.sessions,
        dispatcher=dispatcher,
    )
    page = create_app(context=behind).test_client()
    page.environ_base.update(
        {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "jobs.example.com"}
    )
    token = service.create_token(
        proxied, ADMIN, name="page-behind", role="operator", global_token=True
    ).token
    form = page.get("/login").get_data(as_text=True)
    login = page.post(
        "/login",
        data={"token": token, "csrf_token": csrf_of(form)},
        headers={"Referer": "https://jobs.example.com/login"},
    )
    assert login.status_code == 302, login.text
    job_id, task_id = started(proxied, dispatcher)
    revoke = f"/flower/api/task/revoke/{task_id}"
    hop = page.post(revoke, headers={"Origin": "http://localhost"})
    assert hop.status_code == 403 and "https://jobs.example.com" in hop.text
    assert service.get_job(proxied, ADMIN, job_id).status == "queued"
    answer = page.post(revoke, headers={"Origin": "https://jobs.example.com"})
    assert answer.status_code == 200, answer.text
    assert service.get_job(proxied, ADMIN, job_id).status == "cancelled"


# ---- the service function the proxy calls -----------------------------------------------


def test_cancel_job_of_task_acts_as_the_caller(
    guarded: Context, dispatcher: MemoryDispatcher
) -> None:
    otto = Principal("otto", "operator")
    job_id, task_id = started(guarded, dispatcher, "open")
    with pytest.raises(PermissionDenied):
        service.cancel_job_of_task(guarded, Principal("eve", "viewer"), task_id)
    job = service.cancel_job_of_task(guarded, otto, task_id)
    assert job is not None and job.id == job_id and job.status == "cancelled"
    entries, _ = service.list_audit(guarded, ADMIN, action="job.cancel")
    assert [e.actor for e in entries if e.target == job_id] == ["otto"]
    # a template's stop roles hold, as for the Cancel button
    job_id, task_id = started(guarded, dispatcher, "guarded")
    with pytest.raises(PermissionDenied, match="stop"):
        service.cancel_job_of_task(guarded, otto, task_id)
    # a task that is no jobsys job's: only an admin hears "not ours" (and may pass it on)
    with pytest.raises(PermissionDenied) as denied:
        service.cancel_job_of_task(guarded, otto, "not-a-jobsys-task")
    assert denied.value.right == "admin"
    assert service.cancel_job_of_task(guarded, ADMIN, "not-a-jobsys-task") is None


# ---- the route table and the URL sent ---------------------------------------------------


def test_the_table_lists_every_flower_route_in_flowers_order() -> None:
    """Flower (tornado) picks the first route whose pattern matches; so does the
    proxy. A Flower upgrade that adds a route fails here until it is classified
    (until then it needs admin)."""
    from flower.urls import handlers

    theirs = []
    for handler in handlers:
        pattern = handler.regex.pattern if hasattr(handler, "regex") else handler[0]
        theirs.append(pattern.removesuffix("$").removeprefix("/"))
    assert [r.pattern for r in ROUTES] == [p for p in theirs if p != ".*"]


@pytest.mark.parametrize(
    ("method", "path", "right"),
    [
        ("GET", "", "view"),
        ("GET", "tasks", "view"),
        ("POST", "tasks/datatable", "view"),
        ("POST", "tasks", "admin"),
        ("GET", "api/workers", "view"),
        ("GET", "api/task/result/x", "view"),
        ("POST", "api/task/revoke/x", "cancel"),
        ("POST", "api/task/abort/x", "cancel"),
        ("GET", "api/task/revoke/x", "admin"),
        ("POST", "api/task/apply/x", "admin"),
        ("POST", "api/task/send-task/x", "admin"),
        ("POST", "api/worker/pool/grow/x", "admin"),
        ("POST", "api/worker/shutdown/x", "admin"),
        ("GET", "nothing/here", "admin"),
        ("HEAD", "tasks", "view"),  # GET without the body
        ("HEAD", "api/task/revoke/x", "admin"),  # as GET there
        ("HEAD", "nothing/here", "admin"),
    ],
)
def test_right_for_by_hand(method: str, path: str, right: str) -> None:
    assert right_for(method, path).value == right


def test_the_url_sent_is_the_path_checked(proxied: Context) -> None:
    url = upstream_url(proxied.settings, "api/task/revoke/abc")
    assert url.raw_path == b"/flower/api/task/revoke/abc"
    # httpx would remove dot segments; a path it would rewrite is refused, not sent
    with pytest.raises(SpecError, match="would reach Flower as"):
        upstream_url(proxied.settings, "api/task/revoke/../../worker/pool/grow/x")
    assert flower_proxy.flower_url(proxied.settings).endswith("/flower")
