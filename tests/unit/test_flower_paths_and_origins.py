"""The Flower proxy's rules, one by one: which origins count as this site for a
change made with the session cookie, which request paths are plain enough to
send, the path exactly as the client wrote it, and what is passed on to Flower
and back (its credentials and the caller's name added, ours and hop-by-hop
headers left out, Flower's status and headers returned)."""

from __future__ import annotations

import base64
import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import Principal, Right
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.errors import SpecError
from jobsys.stack import flower_basic_auth
from tests.support.fixtures import make_context, make_settings
from tests.support.http_server import serving
from webui import create_app
from webui.flower_proxy import (
    cross_site_problem,
    flower_url,
    path_problem,
    raw_request_path,
    right_for,
    upstream_path,
    upstream_url,
)

OURS = "http://localhost/"

# ---- a change with the session cookie must say it came from this site -------------------

SAME_SITE = [
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": " Same-Origin "},
    {"Origin": "http://localhost"},
    {"Origin": "HTTP://LocalHost"},
    {"Origin": "http://localhost:80"},  # the default port, written out
    {"Referer": "http://localhost/flower/tasks?x=1"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example.com"},  # the browser's word
]


@pytest.mark.parametrize("headers", SAME_SITE)
def test_a_change_from_this_site_is_allowed(headers: dict[str, str]) -> None:
    assert cross_site_problem("POST", headers, OURS) is None


@pytest.mark.parametrize(
    ("headers", "host_url"),
    [
        ({"Origin": "https://jobs.example.com:443"}, "https://jobs.example.com/"),
        ({"Origin": "http://localhost:8000"}, "http://localhost:8000/"),
        ({"Origin": "http://[::1]:8000"}, "http://[::1]:8000/"),
        ({"Referer": "https://JOBS.example.com/flower/"}, "https://jobs.example.com/"),
    ],
)
def test_this_site_is_its_scheme_host_and_port(headers: dict[str, str], host_url: str) -> None:
    assert cross_site_problem("DELETE", headers, host_url) is None


ELSEWHERE = [
    {"Origin": "http://localhost:8080"},  # another port
    {"Origin": "https://localhost"},  # another scheme
    {"Origin": "http://localhost.evil.example.com"},
    {"Origin": "http://[::1]"},
    {"Origin": "http://localhost:99999"},  # no port at all
    {"Origin": "null"},  # a sandboxed frame or a file
    {"Origin": "https://evil.example.com", "Referer": "http://localhost/flower/"},
]


@pytest.mark.parametrize("headers", ELSEWHERE)
def test_a_change_claiming_another_origin_is_refused_and_told_why(
    headers: dict[str, str],
) -> None:
    claimed = headers["Origin"]
    assert cross_site_problem("POST", headers, OURS) == (
        f"this POST came from {claimed!r}, not from this site (http://localhost); "
        "a change through Flower with the session cookie must come from a page of this "
        "site, or use a bearer token"
    )


@pytest.mark.parametrize(
    ("claimed", "host_url"),
    [
        ("http://localhost:8080", "http://localhost:8000/"),  # two ports, neither the default
        ("http://[::1]:8000", "http://[::1:8000]/"),  # an IPv6 host is not host:port
    ],
)
def test_an_origin_that_only_looks_like_ours_is_refused(claimed: str, host_url: str) -> None:
    assert cross_site_problem("POST", {"Origin": claimed}, host_url) is not None


def test_an_origin_check_needs_a_host_of_our_own_too() -> None:
    assert cross_site_problem("POST", {"Origin": "http://localhost"}, "not a url") is not None


@pytest.mark.parametrize("site", ["same-site", "cross-site", "none"])
def test_the_browsers_sec_fetch_site_decides_when_it_sends_one(site: str) -> None:
    headers = {"Sec-Fetch-Site": site, "Origin": "http://localhost"}
    assert cross_site_problem("PUT", headers, OURS) == (
        f"the browser says this PUT came from another site (Sec-Fetch-Site: {site}); "
        "a change through Flower with the session cookie must come from a page of this "
        "site, or use a bearer token"
    )


def test_a_change_that_says_nothing_of_where_it_came_from_is_refused() -> None:
    assert cross_site_problem("PATCH", {}, OURS) == (
        "this PATCH with the session cookie says neither where it came from "
        "(no Sec-Fetch-Site, Origin or Referer) nor who sends it (no bearer token); "
        "send it from a page of this site, or with 'Authorization: Bearer <token>'"
    )
    assert cross_site_problem("post", {}, OURS) is not None  # whatever the method's case


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reading_is_never_asked_where_it_came_from(method: str) -> None:
    assert cross_site_problem(method, {"Sec-Fetch-Site": "cross-site"}, OURS) is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_bearer_caller_is_not_asked(scheme: str) -> None:
    headers = {"Authorization": f"{scheme} jst_x.y", "Sec-Fetch-Site": "cross-site"}
    assert cross_site_problem("POST", headers, OURS) is None


def test_basic_credentials_are_asked_like_a_cookie() -> None:
    # a browser replays basic credentials by itself, as it does a cookie
    headers = {"Authorization": "Basic YTpi", "Sec-Fetch-Site": "cross-site"}
    assert cross_site_problem("POST", headers, OURS) is not None


# ---- the path as the client sent it -----------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "raw"),
    [
        ({"RAW_URI": "/flower/api/workers?refresh=1", "PATH_INFO": "/x"}, "/flower/api/workers"),
        ({"REQUEST_URI": "/flower/tasks?x", "PATH_INFO": "/x"}, "/flower/tasks"),
        ({"RAW_URI": "", "REQUEST_URI": "/flower/tasks", "PATH_INFO": "/x"}, "/flower/tasks"),
        ({"RAW_URI": "http://jobs:8000/flower/tasks?x=1"}, "/flower/tasks"),  # absolute form
        ({"SCRIPT_NAME": "/app", "PATH_INFO": "/flower/tasks"}, "/app/flower/tasks"),
        # only the decoded path: a '%' in it can only be a literal one
        ({"PATH_INFO": "/flower/api/task/info/a%2e"}, "/flower/api/task/info/a%252e"),
        ({"PATH_INFO": "/flower/caf\xc3\xa9"}, "/flower/café"),  # WSGI's latin-1 of UTF-8
        ({"PATH_INFO": "/flower/\xff"}, "/flower/\ufffd"),  # not UTF-8: refused later, not a 500
        ({"SCRIPT_NAME": "/flower"}, "/flower"),  # PEP 3333: PATH_INFO may be absent
    ],
)
def test_the_raw_path_is_the_request_target(environ: dict[str, str], raw: str) -> None:
    assert raw_request_path(environ) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "/flower/api/task/info/a%20b",  # an encoded space is plain
        "/flower/api/task/info/%41bc",
        "/flower/api/worker/python@host",
        "/flower/api/task/info/x~y-z_.q",
        "/flower/static/js/flower.js",
    ],
)
def test_a_plain_path_is_sent(raw: str) -> None:
    assert path_problem(raw) is None


def test_only_flowers_main_page_may_end_in_a_slash() -> None:
    assert path_problem("/flower/", root=True) is None
    assert path_problem("/flower/tasks/", root=True) is None  # root: only the last is its name
    assert path_problem("/flower/api/../", root=True) is not None
    assert path_problem("/flower/tasks/") == (
        "the path has an empty segment ('//' or a trailing '/'); remove it"
    )


CHARACTERS = (
    "the path holds characters a URL path may not hold as they are (a backslash, "
    "a space, ...); ask for a Flower page such as /flower/tasks"
)
HIDDEN = (
    "the path holds an encoded '.', '/', '\\' or '%' (%2e, %2f, %5c, %25, or a "
    "double encoding such as %252e); write the path plainly"
)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("flower/tasks", CHARACTERS),  # not a path at all
        ("/flower/a b", CHARACTERS),
        ("/flower/a%zz", CHARACTERS),
        ("/flower/a%2", CHARACTERS),
        ("/flower/a%2Eb", HIDDEN),
        ("/flower/a%2fb", HIDDEN),
        ("/flower/a%5Cb", HIDDEN),
        ("/flower/a%25b", HIDDEN),
        ("/flower/a%00b", "the path holds an encoded control character"),
        ("/flower/a%1Fb", "the path holds an encoded control character"),
        ("/flower/a%7fb", "the path holds an encoded control character"),
        (
            "/flower/api/..",
            "the path holds a '..' segment, which would name another route once resolved; "
            "ask for the route itself (e.g. /flower/api/workers)",
        ),
        (
            "/flower/./tasks",
            "the path holds a '.' segment, which would name another route once resolved; "
            "ask for the route itself (e.g. /flower/api/workers)",
        ),
    ],
)
def test_a_path_that_is_not_plain_is_refused_and_told_why(raw: str, problem: str) -> None:
    assert path_problem(raw) == problem


def test_the_path_sent_is_the_one_the_client_wrote() -> None:
    environ = {"RAW_URI": "/flower/api/task/info/a%20b?x=1"}
    assert upstream_path(environ, "api/task/info/a b") == "api/task/info/a%20b"
    assert upstream_path({"RAW_URI": "/flower/"}, "") == ""
    assert upstream_path({"RAW_URI": "/flower/tasks"}, "tasks") == "tasks"


def test_a_path_the_router_read_differently_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        upstream_path({"RAW_URI": "/flower/api/workers"}, "api/tasks")
    assert caught.value.fields == {
        "path": "the path '/flower/api/workers' does not read the same once decoded"
    }
    with pytest.raises(SpecError) as caught:
        upstream_path({"RAW_URI": "/flower/api//workers"}, "api/workers")
    assert list(caught.value.fields) == ["path"]


def test_flowers_url_by_default_and_when_set(settings: Settings) -> None:
    assert flower_url(replace(settings, flower_url=None, flower_port=5599)) == (
        "http://127.0.0.1:5599/flower"
    )
    assert flower_url(replace(settings, flower_url="http://flower:5555/flower/")) == (
        "http://flower:5555/flower"
    )
    url = upstream_url(replace(settings, flower_url="http://flower:5555/flower/"), "api/tasks")
    assert str(url) == "http://flower:5555/flower/api/tasks"


@pytest.mark.parametrize(
    ("method", "path", "right"),
    [
        ("HEAD", "api/workers", Right.VIEW),
        ("HEAD", "api/task/revoke/abc", Right.ADMIN),  # HEAD is GET, which revoke lacks
        ("GET", "api/task/revoke/abc", Right.ADMIN),
        ("POST", "api/task/abort/abc", Right.CANCEL),
        ("POST", "tasks/datatable", Right.VIEW),
        ("DELETE", "tasks", Right.ADMIN),
        ("GET", "no/such/route", Right.ADMIN),
        ("GET", "", Right.VIEW),
    ],
)
def test_the_right_a_request_needs(method: str, path: str, right: Right) -> None:
    assert right_for(method, path) is right


# ---- what goes to Flower and what comes back --------------------------------------------


@dataclass
class Recorder:
    url: str = ""
    requests: list[dict[str, object]] = field(default_factory=list)


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """A fake Flower that records each request's headers and answers 418 with
    a header of its own and hop-by-hop ones that must not come through."""
    seen = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length),
                }
            )
            body = json.dumps({"from": "flower"}).encode()
            self.send_response(418)
            self.send_header("Content-Type", "application/json")
            if self.path.endswith("/api/task/types"):  # as tornado's compress_response does
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("X-Flower-Says", "hello")
            if self.path.endswith("/api/hand-out-a-cookie"):  # as Flower's _xsrf cookie
                self.send_header("Set-Cookie", "_xsrf=2|flowers; Path=/flower")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("Connection", "close")
            self.send_header("Upgrade", "h2c")
            self.send_header("Trailer", "X-Checksum")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as base:
        seen.url = f"{base}/flower"
        yield seen


@dataclass
class Proxy:
    client: FlaskClient
    settings: Settings
    admin: dict[str, str]
    ctx: Context
    dispatcher: MemoryDispatcher


def _proxy(tmp: Path, flower: str) -> Proxy:
    settings = make_settings(tmp, docker_images=("jobsys/*",), flower_url=flower)
    dispatcher = MemoryDispatcher()
    ctx = make_context(settings, dispatcher)
    token = service.create_token(ctx, Principal("ada", "admin"), name="ada", role="admin").token
    client = create_app(context=ctx).test_client()
    return Proxy(client, settings, {"Authorization": f"Bearer {token}"}, ctx, dispatcher)


@pytest.fixture(scope="module")
def proxy(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    return _proxy(tmp_path_factory.mktemp("flower-forward"), recorder.url)


def test_a_cookie_flower_sets_reaches_its_caller_and_no_one_else(
    proxy: Proxy, recorder: Recorder
) -> None:
    """The proxy's pooled client is every caller's: it must not keep Flower's
    cookies and hand them on with the next caller's requests."""
    handed = proxy.client.get("/flower/api/hand-out-a-cookie", headers=proxy.admin)
    assert "_xsrf=2|flowers" in handed.headers.get("Set-Cookie", "")  # to the caller
    recorder.requests.clear()
    someone_else = create_app(context=proxy.ctx).test_client()
    someone_else.get("/flower/api/workers", headers=proxy.admin)
    (sent,) = recorder.requests
    assert "cookie" not in sent["headers"]  # type: ignore[operator]


def test_flower_gets_its_credentials_and_the_callers_name_not_ours(
    proxy: Proxy, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    recorder.requests.clear()
    proxy.client.set_cookie("session", "abc")
    answer = proxy.client.post(
        "/flower/api/worker/pool/grow/python@host?n=1&n=2",
        data=b"a=b",
        headers={
            **proxy.admin,
            "X-Trace": "t-1",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    (sent,) = recorder.requests
    assert (sent["method"], sent["path"]) == (
        "POST",
        "/flower/api/worker/pool/grow/python@host?n=1&n=2",
    )
    assert sent["body"] == b"a=b"
    headers = sent["headers"]
    assert isinstance(headers, dict)
    expected = base64.b64encode(flower_basic_auth(proxy.settings).encode()).decode()
    assert headers["authorization"] == f"Basic {expected}"  # Flower's, never the caller's token
    assert headers["x-forwarded-user"] == "ada"
    assert headers["x-trace"] == "t-1"
    assert "cookie" not in headers  # our session stays with us
    assert headers["host"].startswith("127.0.0.1:")  # Flower's host, not ours
    # Flower's answer comes back as it was, without its hop-by-hop headers
    assert answer.status_code == 418
    assert answer.get_json() == {"from": "flower"}
    assert answer.headers["X-Flower-Says"] == "hello"
    for hop in ("Keep-Alive", "Connection", "Upgrade", "Trailer"):
        assert hop not in answer.headers


def test_a_compressed_answer_from_flower_arrives_readable(proxy: Proxy) -> None:
    """httpx decodes Flower's gzip; passing its Content-Encoding on would make
    the browser decode the plain body once more and fail."""
    answer = proxy.client.get("/flower/api/task/types", headers=proxy.admin)
    assert answer.status_code == 418
    assert "Content-Encoding" not in answer.headers
    assert answer.get_json() == {"from": "flower"}


def test_hop_by_hop_headers_stop_at_the_proxy(proxy: Proxy, recorder: Recorder) -> None:
    """Headers that belong to one connection are not passed on: a client's
    'Connection: X-Forwarded-User' must not get the caller's name stripped
    downstream, nor proxy credentials reach Flower."""
    recorder.requests.clear()
    hops = {
        "Connection": "X-Forwarded-User",
        "Keep-Alive": "timeout=99",
        "Upgrade": "websocket",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
    }
    proxy.client.get("/flower/api/workers", headers={**proxy.admin, **hops})
    (sent,) = recorder.requests
    headers = sent["headers"]
    assert isinstance(headers, dict)
    for name, value in hops.items():
        assert headers.get(name.lower()) != value, name


@pytest.mark.parametrize(
    ("form", "did"),
    [
        ({}, "Revoked"),
        ({"terminate": "true"}, "Terminated"),
        ({"terminate": "TRUE"}, "Terminated"),
        ({"terminate": "1"}, "Terminated"),
        ({"terminate": "yes"}, "Terminated"),
        ({"terminate": "on"}, "Terminated"),
        ({"terminate": "false"}, "Revoked"),
        ({"terminate": "0"}, "Revoked"),
    ],
)
def test_a_revoke_says_whether_it_terminated(
    proxy: Proxy, recorder: Recorder, form: dict[str, str], did: str
) -> None:
    """Flower's API takes terminate as any of its true words; the answer and the
    job's reason say which it was."""
    spec = {
        "name": "hello",
        "steps": [{"kind": "docker", "image": "jobsys/busybox:local", "command": ["sleep", "60"]}],
    }
    job = service.submit_job(proxy.ctx, Principal("dev", "developer"), spec)
    task_id = proxy.dispatcher.published[-1].task_id
    recorder.requests.clear()
    answer = proxy.client.post(f"/flower/api/task/revoke/{task_id}", data=form, headers=proxy.admin)
    assert answer.status_code == 200, answer.text
    assert answer.get_json() == {
        "message": f"{did} '{task_id}': its job {job.id} was cancelled as its Cancel button "
        "does (running containers and chunks are ended)",
        "job_id": job.id,
        "status": "cancelled",
    }
    reason = service.get_job(proxy.ctx, Principal("ada", "admin"), job.id).error
    assert reason == f"cancelled by ada: task {task_id} {did.lower()} through Flower"
    assert recorder.requests == []


def test_only_the_first_of_several_flower_users_is_sent(
    proxy: Proxy, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "first:one,second:two")
    recorder.requests.clear()
    assert proxy.client.get("/flower/api/workers", headers=proxy.admin).status_code == 418
    (sent,) = recorder.requests
    headers = sent["headers"]
    assert isinstance(headers, dict)
    assert headers["authorization"] == "Basic " + base64.b64encode(b"first:one").decode()


def test_flower_down_is_503_saying_how_to_start_it(tmp_path: Path) -> None:
    url = a_url_nobody_answers()
    down = _proxy(tmp_path, url)
    answer = down.client.get("/flower/api/workers", headers=down.admin)
    assert answer.status_code == 503
    message = answer.get_json()["message"]
    assert message.startswith(f"Flower does not answer at {url} (")
    assert message.endswith(
        "start it with 'jobsys flower --url_prefix=flower' (make run does) or set JOBSYS_FLOWER_URL"
    )


def a_url_nobody_answers() -> str:
    """A local URL whose port was just bound and released, so nothing answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/flower"
