"""Who may do what: roles, rights and the principal a request acts as.

Every service function that reads or changes jobs takes a ``Principal`` and
calls ``require`` first, so the web UI, API, CLI and scheduler cannot differ
in what they allow. Roles are fixed sets of rights; a later issue lets
catalog templates narrow them further.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

from jobsys.errors import PermissionDenied, SpecError


class Right(enum.StrEnum):
    VIEW = "view"
    START = "start"  # start catalog templates (which may narrow it to named roles)
    SUBMIT = "submit"  # Docker steps and functions by import path
    SUBMIT_CODE = "submit_code"  # pickled callables: arbitrary code on workers
    CANCEL = "cancel"
    RERUN = "rerun"  # also "run now" of a schedule someone with SCHEDULE vetted
    SCHEDULE = "schedule"  # create, edit, enable, disable and delete schedules
    ADMIN = "admin"


ROLE_RIGHTS: dict[str, frozenset[Right]] = {
    "viewer": frozenset({Right.VIEW}),
    "operator": frozenset({Right.VIEW, Right.START, Right.CANCEL, Right.RERUN}),
    "developer": frozenset(
        {Right.VIEW, Right.START, Right.SUBMIT, Right.SUBMIT_CODE, Right.CANCEL, Right.RERUN}
    ),
    "admin": frozenset(Right),
}

TOKEN_PREFIX = "jst_"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    #: Where the request came from (an address, ``cli``, ``beat``), for the audit trail.
    source: str = ""

    def can(self, right: Right) -> bool:
        return right in ROLE_RIGHTS.get(self.role, frozenset())


#: What beat entries and workers act as.
SYSTEM = Principal(name="system", role="admin")


def require(principal: Principal, right: Right) -> None:
    if not principal.can(right):
        raise PermissionDenied(right.value, principal.role)


def check_role(role: str) -> str:
    if role not in ROLE_RIGHTS:
        raise SpecError({"role": f"unknown role {role!r}; use one of {', '.join(ROLE_RIGHTS)}"})
    return role


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 of the token. Tokens carry 256 random bits, so a slow KDF adds
    nothing against guessing and would cost every API call; passwords (a later
    issue) get a real KDF."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
