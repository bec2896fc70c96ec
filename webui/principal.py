"""Who is calling: a bearer token for the API, the signed session for pages."""

from __future__ import annotations

from flask import current_app, request, session

from jobsys import service
from jobsys.auth import Principal
from jobsys.context import Context


def context() -> Context:
    ctx: Context = current_app.extensions["jobsys"]
    return ctx


def api_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return service.authenticate(context(), token.strip() if scheme.lower() == "bearer" else None)


def page_principal() -> Principal:
    """The signed-in user of an HTML page; Unauthenticated sends them to /login."""
    return service.authenticate(context(), session.get("token"))
