"""Who may do what: roles, rights and the principal a request acts as.

Every service function that reads or changes jobs takes a ``Principal`` and
calls ``require`` first, so the web UI, API, CLI and scheduler cannot differ
in what they allow. Roles are fixed sets of rights; a later issue lets
catalog templates narrow them further.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
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


def new_token() -> tuple[str, str]:
    """A new token and its key id: ``jst_<key id>.<secret>``. The key id finds the
    row; only a scrypt hash of the secret is stored."""
    key_id = secrets.token_hex(6)
    return f"{TOKEN_PREFIX}{key_id}.{secrets.token_urlsafe(32)}", key_id


def split_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, dot, secret = token[len(TOKEN_PREFIX) :].partition(".")
    if not dot or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


#: scrypt cost for token secrets. They carry 256 random bits, so the cost is
#: not what protects them; it keeps a stolen table as useless as a password
#: table would be. Each process verifies a token once and then remembers it.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **SCRYPT, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt_hex, _, digest_hex = rest.partition("$")
    if scheme != "scrypt" or not salt_hex or not digest_hex:
        return False
    digest = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt_hex), **SCRYPT, dklen=32)
    return hmac.compare_digest(digest.hex(), digest_hex)
