"""Flower behind the jobsys sign-in: ``/flower/...`` is proxied to the local
Flower (started with ``--url_prefix=flower``), so the same users, roles,
sessions and tokens govern it, and the audit trail sees refusals.

The right a request needs is looked up in ``ROUTES``, a copy of Flower 2.2's
own route table (``flower/urls.py``, in its order: tornado takes the first
pattern that matches, and so do we) with the right each method needs:

- ``view``: reading pages and the GET API (and the POST the tasks page
  uses to fetch its rows, which reads);
- ``cancel``: revoke (and terminate, which is revoke with ``terminate=true``)
  and abort of a task;
- ``admin``: everything else (pool, consumers, rate limits, time limits, and
  above all ``task/apply`` and ``send-task``, which run any registered task
  with any arguments), and any route or method the table does not know.

The right is decided on the exact path that is sent to Flower. A path that
could name one route to us and another to someone downstream is refused with
400 before anything is checked or sent: ``.`` and ``..`` segments (httpx, like
every URL library, removes them, which once turned an operator's
``task/revoke/../../worker/pool/grow/...`` into pool control), empty segments,
percent-encoded dots, slashes, backslashes and percent signs (``%2e%2e``,
``%2f``, and the double-encoded ``%252e``), and characters a URL path may not
hold as they are. The check reads the request target as the client sent it
(``RAW_URI``, which gunicorn and werkzeug's server keep), not Flask's decoded
path, and the URL handed to httpx is checked to keep that path unchanged.

A revoke or abort of a jobsys task does not go to Flower: it cancels the
task's job through ``service.cancel_job_of_task``, the same cancel as the
job's Cancel button, as the caller (a template's ``stop`` roles apply, and the
audit trail names the caller). A task that belongs to no jobsys job needs
``admin`` and is passed on to Flower as before; the form it came with (Flower's
Terminate button posts ``terminate=true``) is passed on with it.

The blueprint is exempt from our CSRF token, since Flower's own pages post
without it; what stands in for it is an origin check on every request that
changes something (POST, PUT, DELETE, PATCH) made with the session cookie
rather than a bearer token, intercepted or forwarded alike: the browser must
say the request came from our own origin (``Sec-Fetch-Site: same-origin``
where it sends that header, else an ``Origin`` or ``Referer`` whose scheme and
host are the request's own). A revoke is answered by us, not Flower, so
without this a page on a sibling site (``Sec-Fetch-Site: same-site``, which
the Lax cookie does not stop) could cancel a signed-in operator's jobs. HEAD
asks for what GET reads and needs what GET needs.

Flower keeps its own basic auth for anyone who reaches its port directly;
the proxy adds those credentials on the way through.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from flask import Blueprint, Response, g, jsonify, request

from jobsys import service
from jobsys.auth import Right
from jobsys.config import Settings
from jobsys.errors import DispatchError, PermissionDenied, SpecError, Unauthenticated
from jobsys.stack import flower_basic_auth
from webui.principal import context, current_principal, needs, require_global
from webui.views import sign_in_first

bp = Blueprint("flower", __name__, url_prefix="/flower")
bp.register_error_handler(Unauthenticated, sign_in_first)

METHODS = ["GET", "POST", "PUT", "DELETE"]
#: Methods that change something: a cookie session must prove its origin for these.
UNSAFE = frozenset({"POST", "PUT", "DELETE", "PATCH"})
DEFAULT_PORTS = {"http": "80", "https": "443"}
#: Hop-by-hop and framing headers that must not be copied through a proxy.
HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
    "content-length",
    "host",
    "authorization",
    "cookie",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
}

VIEW = {"GET": Right.VIEW}
ADMIN: dict[str, Right] = {}


@dataclass(frozen=True)
class Route:
    """One of Flower's routes: its pattern (as in ``flower/urls.py``, without
    the leading slash) and the right each method needs; a method not listed
    needs admin. ``cancels``: a POST here revokes or aborts the task named by
    the pattern's group."""

    pattern: str
    rights: Mapping[str, Right] = field(default_factory=dict)
    cancels: bool = False


ROUTES: tuple[Route, ...] = (
    Route("", VIEW),
    Route("workers", VIEW),
    Route("worker/(.+)", VIEW),
    Route("task/(.+)", VIEW),
    Route("tasks", VIEW),
    Route("tasks/datatable", {"GET": Right.VIEW, "POST": Right.VIEW}),
    Route("broker", VIEW),
    Route("api/workers", VIEW),
    Route("api/worker/shutdown/(.+)", ADMIN),
    Route("api/worker/pool/restart/(.+)", ADMIN),
    Route("api/worker/pool/grow/(.+)", ADMIN),
    Route("api/worker/pool/shrink/(.+)", ADMIN),
    Route("api/worker/pool/autoscale/(.+)", ADMIN),
    Route("api/worker/queue/add-consumer/(.+)", ADMIN),
    Route("api/worker/queue/cancel-consumer/(.+)", ADMIN),
    Route("api/tasks", VIEW),
    Route("api/task/types", VIEW),
    Route("api/queues/length", VIEW),
    Route("api/task/info/(.*)", VIEW),
    Route("api/task/apply/(.+)", ADMIN),
    Route("api/task/async-apply/(.+)", ADMIN),
    Route("api/task/send-task/(.+)", ADMIN),
    Route("api/task/result/(.+)", VIEW),
    Route("api/task/abort/(.+)", {"POST": Right.CANCEL}, cancels=True),
    Route("api/task/timeout/(.+)", ADMIN),
    Route("api/task/rate-limit/(.+)", ADMIN),
    Route("api/task/revoke/(.+)", {"POST": Right.CANCEL}, cancels=True),
    Route("metrics", VIEW),
    Route("healthcheck", VIEW),
    Route("static/(.*)", VIEW),
    Route("login/?", ADMIN),  # Flower's own sign-in (OAuth); ours stands in front
    Route("logout", ADMIN),
)

#: What a URL path may hold as it is (RFC 3986 ``pchar`` and ``/``); anything
#: else must come percent-encoded.
PLAIN = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
#: Encodings that hide a dot, a segment boundary or another encoding.
HIDDEN = re.compile(r"%(?:2e|2f|5c|25)", re.IGNORECASE)
#: Encoded control characters (NUL, CR, LF, ...) have no business in a route.
CONTROL = re.compile(r"%(?:[01][0-9a-f]|7f)", re.IGNORECASE)


def flower_url(settings: Settings) -> str:
    return (settings.flower_url or f"http://127.0.0.1:{settings.flower_port}/flower").rstrip("/")


def find_route(path: str) -> tuple[Route, re.Match[str]] | None:
    """The route Flower would pick for ``path`` (relative to its prefix)."""
    for route in ROUTES:
        found = re.fullmatch(route.pattern, path)
        if found:
            return route, found
    return None


def right_for(method: str, path: str) -> Right:
    """The right ``method`` on ``path`` (relative to /flower/) needs. Flower
    answers a method its first matching route lacks with 405, so a method not
    listed there needs admin, as does a path no route matches."""
    found = find_route(path)
    if found is None:
        return Right.ADMIN
    # HEAD is GET without the body (tornado and werkzeug answer it so): same right
    return found[0].rights.get("GET" if method == "HEAD" else method, Right.ADMIN)


def _origin_of(url: str) -> tuple[str, str] | None:
    """The (scheme, host[:port]) of ``url``, default port left out, or None."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return None
    if port is not None and str(port) != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return scheme, host


def cross_site_problem(method: str, headers: Mapping[str, str], host_url: str) -> str | None:
    """Why a request made with the session cookie may not change anything, or
    None. A bearer token is not sent by a browser on its own, so bearer callers
    are not asked; nor are reading methods. ``host_url``: the request's own
    origin (behind ProxyFix, when JOBSYS_TRUST_PROXY is set, the one the
    client used)."""
    if method.upper() not in UNSAFE:
        return None
    if headers.get("Authorization", "").lower().startswith("bearer "):
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() == "same-origin":
            return None
        return (
            f"the browser says this {method} came from another site (Sec-Fetch-Site: {site}); "
            "a change through Flower with the session cookie must come from a page of this "
            "site, or use a bearer token"
        )
    claimed = headers.get("Origin") or headers.get("Referer")
    if not claimed:
        return (
            f"this {method} with the session cookie says neither where it came from "
            "(no Sec-Fetch-Site, Origin or Referer) nor who sends it (no bearer token); "
            "send it from a page of this site, or with 'Authorization: Bearer <token>'"
        )
    ours = _origin_of(host_url)
    if ours is None or _origin_of(claimed) != ours:
        return (
            f"this {method} came from {claimed!r}, not from this site ({host_url.rstrip('/')}); "
            "a change through Flower with the session cookie must come from a page of this "
            "site, or use a bearer token"
        )
    return None


def raw_request_path(environ: Mapping[str, Any]) -> str:
    """The path as the client sent it, before anyone decoded it. gunicorn and
    werkzeug keep the request target in ``RAW_URI`` (werkzeug and mod_wsgi also
    in ``REQUEST_URI``); the absolute form (``http://host/path``) is allowed
    by HTTP/1.1. A server that keeps neither leaves only the decoded path,
    whose ``%`` then reads as an encoding and is refused."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        decoded = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        return decoded.encode("latin-1").decode("utf-8", "replace").replace("%", "%25")
    if not raw.startswith("/"):
        return urlsplit(raw).path
    return str(raw).split("?", 1)[0]


def path_problem(raw: str, *, root: bool = False) -> str | None:
    """Why ``raw`` (a whole request path, still encoded) may not be proxied, or
    None. ``root``: the request is for Flower's main page, ``/flower/``, whose
    trailing slash is its name."""
    if not raw.startswith("/") or not PLAIN.fullmatch(raw):
        return (
            "the path holds characters a URL path may not hold as they are (a backslash, "
            "a space, ...); ask for a Flower page such as /flower/tasks"
        )
    if HIDDEN.search(raw):
        return (
            "the path holds an encoded '.', '/', '\\' or '%' (%2e, %2f, %5c, %25, or a "
            "double encoding such as %252e); write the path plainly"
        )
    if CONTROL.search(raw):
        return "the path holds an encoded control character"
    segments = raw[1:].split("/")
    if root and raw.endswith("/"):
        segments = segments[:-1]
    for segment in segments:
        if segment in (".", ".."):
            return (
                f"the path holds a {segment!r} segment, which would name another route "
                "once resolved; ask for the route itself (e.g. /flower/api/workers)"
            )
        if not segment:
            return "the path has an empty segment ('//' or a trailing '/'); remove it"
    return None


def upstream_path(environ: Mapping[str, Any], routed: str) -> str:
    """The path to send to Flower (relative to its prefix), exactly as the client
    wrote it; SpecError (400) for one that is not plain. ``routed`` is Flask's
    decoded view of the same path, which it must agree with."""
    raw = raw_request_path(environ)
    problem = path_problem(raw, root=not routed)
    if problem:
        raise SpecError({"path": problem})
    count = len(routed.split("/")) if routed else 0
    sent = "/".join(raw.split("/")[-count:]) if count else ""
    if unquote(sent) != routed:
        raise SpecError({"path": f"the path {raw!r} does not read the same once decoded"})
    return sent


def upstream_url(settings: Settings, sent: str) -> httpx.URL:
    """Flower's URL for ``sent``. httpx removes dot segments from every URL it
    is given; ``sent`` has none by now, and this checks that the path httpx
    will send is the one whose right was checked, so it never differs."""
    base = flower_url(settings)
    url = httpx.URL(f"{base}/{sent}")
    expected = f"{httpx.URL(base).raw_path.decode().rstrip('/')}/{sent}"
    if url.raw_path.decode() != expected:
        raise SpecError(
            {"path": f"the path would reach Flower as {url.raw_path.decode()!r}; write it plainly"}
        )
    return url


@bp.before_request
def refuse_unplain_paths() -> None:
    """Before sign-in and rights: a path that is not plain is refused, so the
    right is never decided on one path while another is sent."""
    routed = str((request.view_args or {}).get("path", ""))
    g.flower_path = upstream_path(request.environ, routed)


@bp.route("/", defaults={"path": ""}, methods=METHODS)
@bp.route("/<path:path>", methods=METHODS, merge_slashes=False)
@needs(right_for)
def proxy(path: str) -> Response:
    # needs() checked the routed path; this is the exact path that is sent
    sent: str = g.flower_path
    principal = current_principal()
    right = right_for(request.method, sent)
    require_global(principal, right)
    problem = cross_site_problem(request.method, request.headers, request.host_url)
    if problem:
        raise PermissionDenied(right.value, principal.role, problem)
    # read the body once and keep it: the cancel reads its form, the forward sends it
    request.get_data(cache=True)
    found = find_route(sent)
    if found is not None and found[0].cancels and request.method == "POST":
        action = "aborted" if found[0].pattern.startswith("api/task/abort/") else "revoked"
        cancelled = _cancel(unquote(found[1].group(1)), action)
        if cancelled is not None:
            return cancelled
    return _forward(sent)


def _cancel(task_id: str, action: str) -> Response | None:
    """A jobsys task's revoke, terminate or abort is its job's Cancel. None: the
    task is no jobsys job's and the caller (an admin) may pass it on to Flower.

    Flower's own buttons send ``terminate`` in the form; the cancel ends running
    containers and chunk processes whatever it says."""
    terminate = request.values.get("terminate", "").lower() in ("1", "true", "yes", "on")
    if action == "revoked" and terminate:
        action = "terminated"
    job = service.cancel_job_of_task(
        context(), current_principal(), task_id, how=f"{action} through Flower"
    )
    if job is None:
        return None
    return jsonify(
        {
            "message": f"{action.capitalize()} '{task_id}': its job {job.id} was cancelled "
            "as its Cancel button does (running containers and chunks are ended)",
            "job_id": job.id,
            "status": job.status,
        }
    )


_CLIENT: list[httpx.Client] = []
_CLIENT_LOCK = threading.Lock()


def _client() -> httpx.Client:
    """One pooled client per web process: a fresh one per request would build an
    SSL context and a connection every time (a few hundred ms on a busy box).

    It keeps no cookies: the client is shared by every caller, so a cookie
    Flower set in one caller's answer (its ``_xsrf``, say) would otherwise go
    out with everyone's later requests. Flower's Set-Cookie still reaches the
    caller's browser, which sends it back itself."""
    with _CLIENT_LOCK:
        if not _CLIENT:
            keeps_none = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
            _CLIENT.append(httpx.Client(timeout=30, cookies=keeps_none))
        return _CLIENT[0]


def _forward(sent: str) -> Response:
    principal = current_principal()
    settings = context().settings
    credentials = flower_basic_auth(settings).split(",")[0]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    headers["X-Forwarded-User"] = principal.name
    try:
        upstream = _client().request(
            request.method,
            upstream_url(settings, sent),
            params=list(request.args.items(multi=True)),
            content=request.get_data(),
            headers=headers,
        )
    except httpx.TransportError as exc:
        raise DispatchError(
            f"Flower does not answer at {flower_url(settings)} ({exc}); start it with "
            "'jobsys flower --url_prefix=flower' (make run does) or set JOBSYS_FLOWER_URL"
        ) from exc
    kept = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP]
    return Response(upstream.content, status=upstream.status_code, headers=kept)
