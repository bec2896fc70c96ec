"""Flower behind the jobsys sign-in: ``/flower/...`` is proxied to the local
Flower (started with ``--url_prefix=flower``), so the same users, roles,
sessions and tokens govern it, and the audit trail sees refusals.

What a role may do there follows what Flower's page or API does:
reading (pages, task lists, ``/metrics``) needs ``view``; revoking,
terminating, aborting a task needs ``cancel``; everything else that changes
something (pool, consumers, rate limits, and above all ``task/apply`` and
``send-task``, which run any registered task with any arguments) needs ``admin``.
Flower keeps its own basic auth for anyone who reaches its port directly;
the proxy adds those credentials on the way through.
"""

from __future__ import annotations

import base64

import httpx
from flask import Blueprint, Response, request

from jobsys.auth import Right
from jobsys.config import Settings
from jobsys.errors import DispatchError, Unauthenticated
from jobsys.stack import flower_basic_auth
from webui.principal import context, current_principal, needs
from webui.views import sign_in_first

bp = Blueprint("flower", __name__, url_prefix="/flower")
bp.register_error_handler(Unauthenticated, sign_in_first)

METHODS = ["GET", "POST", "PUT", "DELETE"]
CANCELLING = ("api/task/revoke/", "api/task/abort/")
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


def flower_url(settings: Settings) -> str:
    return (settings.flower_url or f"http://127.0.0.1:{settings.flower_port}/flower").rstrip("/")


def right_for(method: str, path: str) -> Right:
    if method == "GET":
        return Right.VIEW
    if path.startswith(CANCELLING):
        return Right.CANCEL
    return Right.ADMIN


@bp.route("/", defaults={"path": ""}, methods=METHODS)
@bp.route("/<path:path>", methods=METHODS)
@needs(right_for)
def proxy(path: str) -> Response:
    principal = current_principal()
    settings = context().settings
    credentials = flower_basic_auth(settings).split(",")[0]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    headers["X-Forwarded-User"] = principal.name
    try:
        upstream = httpx.request(
            request.method,
            f"{flower_url(settings)}/{path}",
            params=list(request.args.items(multi=True)),
            content=request.get_data(),
            headers=headers,
            timeout=30,
        )
    except httpx.TransportError as exc:
        raise DispatchError(
            f"Flower does not answer at {flower_url(settings)} ({exc}); start it with "
            "'jobsys flower --url_prefix=flower' (make run does) or set JOBSYS_FLOWER_URL"
        ) from exc
    kept = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP]
    return Response(upstream.content, status=upstream.status_code, headers=kept)
