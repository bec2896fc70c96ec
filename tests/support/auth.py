"""Signing in for tests: the bearer header of a token (a new one in process,
or a live stack's token of a role), the CSRF token of a page's form, and a
page client signed in with a token."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from webui import create_app

if TYPE_CHECKING:
    from jobsys.testing import LiveStack


def bearer_of(token: str) -> dict[str, str]:
    """The Authorization header that presents ``token``."""
    return {"Authorization": f"Bearer {token}"}


def new_token(
    ctx: Context, role: str = "developer", name: str | None = None, *, everywhere: bool = False
) -> str:
    """A new token with ``role`` in the default project (``everywhere``: a global
    one, as Flower asks), named after its role unless ``name`` is given."""
    return service.create_token(
        ctx, SYSTEM, name=name or role, role=role, global_token=everywhere
    ).token


def bearer(ctx: Context, role: str = "developer") -> dict[str, str]:
    """Authorization headers of a new token with ``role``, named after it."""
    return bearer_of(new_token(ctx, role))


def stack_bearer(
    stack: LiveStack, role: str = "developer", *, everywhere: bool = False
) -> dict[str, str]:
    """Authorization headers of the live stack's token of ``role`` (``test-<role>``);
    ``everywhere``: a global one, as Flower asks."""
    return bearer_of(stack.token(role, everywhere=everywhere))


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, token: str) -> FlaskClient:
    """Sign ``client`` in through the login form with ``token``."""
    login = client.get("/login").get_data(as_text=True)
    answer = client.post("/login", data={"token": token, "csrf_token": csrf_of(login)})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def signed_in(ctx: Context, role: str) -> FlaskClient:
    """A page client signed in with a new token of ``role``."""
    return sign_in(create_app(context=ctx).test_client(), new_token(ctx, role))
