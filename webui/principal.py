"""Who is calling: a bearer token for the API, the signed session cookie (which
holds only a web session's reference) for pages; and ``needs``, the right each
route declares and checks before anything else."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface

from jobsys import service
from jobsys.auth import Principal, Right, require, require_somewhere
from jobsys.context import Context
from jobsys.errors import PermissionDenied

F = TypeVar("F", bound=Callable[..., Any])

#: Marks a route anyone may open (sign-in, sign-out, the index redirect).
PUBLIC = "public"


def context() -> Context:
    ctx: Context = current_app.extensions["jobsys"]
    return ctx


def source() -> str:
    """Where the request came from, for the audit trail."""
    return request.remote_addr or ""


def api_principal() -> Principal:
    if "principal" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else None
        g.principal = service.authenticate(context(), token, source=source())
    principal: Principal = g.principal
    return principal


#: The session cookie's key for the web session's reference (see jobsys.service.web_sessions).
SESSION_KEY = "ref"


def page_principal() -> Principal:
    """The signed-in user of an HTML page; Unauthenticated sends them to /login."""
    if "principal" not in g:
        g.principal = service.session_principal(
            context(), session.get(SESSION_KEY), source=source()
        )
    principal: Principal = g.principal
    return principal


def require_global(principal: Principal, right: Right) -> None:
    """``right`` held in every project. For what shows every project at once
    (Flower lists every task): a user whose roles are per project is told so."""
    if principal.scoped and principal.projects:
        raise PermissionDenied(
            right.value,
            "none",
            "this shows every project's tasks, so it is for global roles only; your roles "
            "are per project: use jobsys's own pages and API, which show your projects",
        )
    require(principal, right)


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, marked ``Secure`` per request when
    ``JOBSYS_SECURE_COOKIES=auto`` and the request came over https (which,
    with ``JOBSYS_TRUST_PROXY``, includes ``X-Forwarded-Proto: https``)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        mode = app.config["JOBSYS_SECURE_COOKIES"]
        return mode == "always" or (mode == "auto" and has_request_context() and request.is_secure)


def current_principal() -> Principal:
    """A bearer token under /api/ (or wherever one is sent), else the page session."""
    bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
    return api_principal() if bearer or request.path.startswith("/api/") else page_principal()


RightOf = Callable[[str, str], Right]


def needs(right: Right | RightOf | str | None) -> Callable[[F], F]:
    """Declare and check the right a route needs (None: any signed-in caller;
    PUBLIC: nobody needs to sign in; a function of (method, path) for a route
    whose right depends on what it is asked to do). The service checks again,
    with the finer rules (pickled code, template roles); this makes every route
    answer 401 or 403 before it reads input, and lets a test walk the route table."""

    def mark(view: F) -> F:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if right != PUBLIC:
                principal = current_principal()
                if isinstance(right, Right):
                    # In some project: the service checks the project it acts in.
                    require_somewhere(principal, right)
                elif callable(right):
                    require_global(principal, right(request.method, str(kwargs.get("path", ""))))
            return view(*args, **kwargs)

        checked.needs = right  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return mark
