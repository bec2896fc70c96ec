"""Signing in for in-process tests: a bearer header for a new token, the CSRF
token of a page's form, and a page client signed in with a token."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from webui import create_app


def bearer(ctx: Context, role: str = "developer") -> dict[str, str]:
    """Authorization headers of a new token with ``role``, named after it."""
    token = service.create_token(ctx, SYSTEM, name=role, role=role).token
    return {"Authorization": f"Bearer {token}"}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def signed_in(ctx: Context, role: str) -> FlaskClient:
    """A page client signed in with a new token of ``role``."""
    client: FlaskClient = create_app(context=ctx).test_client()
    token = service.create_token(ctx, SYSTEM, name=role, role=role).token
    login = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"token": token, "csrf_token": csrf_of(login)})
    return client
