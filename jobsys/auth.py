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


#: Roles from least to most: each holds every right of those before it.
ROLE_ORDER = ("viewer", "operator", "developer", "admin")


def role_rank(role: str) -> int:
    """A role's place in ``ROLE_ORDER``; -1 for none ("") or an unknown one."""
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else -1


def higher_role(a: str, b: str) -> str:
    """The role with more rights; a role outside ``ROLE_ORDER`` beats none ("")."""
    if role_rank(a) == role_rank(b):
        return a or b
    return a if role_rank(a) > role_rank(b) else b


def lesser_role(a: str, b: str) -> str:
    return a if role_rank(a) <= role_rank(b) else b


@dataclass(frozen=True)
class Principal:
    """Who acts: a name, a global ``role`` held in every project ("" for none),
    and a role in each project they belong to (``projects``: (project, role)
    pairs). Their role in a project is the higher of the two."""

    name: str
    role: str = ""
    #: Where the request came from (an address, ``cli``, ``beat``), for the audit trail.
    source: str = ""
    projects: tuple[tuple[str, str], ...] = ()

    def role_in(self, project: str) -> str:
        own = next((r for p, r in self.projects if p == project), "")
        return higher_role(self.role, own)

    def can(self, right: Right, project: str | None = None) -> bool:
        """The right in ``project``; with none, the right globally (in every project)."""
        role = self.role if project is None else self.role_in(project)
        return right in ROLE_RIGHTS.get(role, frozenset())

    def projects_with(self, right: Right) -> frozenset[str] | None:
        """The projects where the principal has ``right``; None for every project
        (their global role has it)."""
        if self.can(right):
            return None
        return frozenset(p for p, r in self.projects if right in ROLE_RIGHTS.get(r, frozenset()))

    def can_somewhere(self, right: Right) -> bool:
        """The right in at least one project (what a page offers a button for;
        the service checks the project the button acts in)."""
        return self.projects_with(right) != frozenset()

    @property
    def roles_label(self) -> str:
        """Their roles in words, for a page's header: ``admin`` (global) or
        ``developer in data, viewer in default``."""
        parts = [f"{self.role} everywhere"] if self.role and self.projects else []
        parts += [f"{r} in {p}" for p, r in self.projects]
        return ", ".join(parts) or self.role or "no role"

    @property
    def scoped(self) -> bool:
        """Whether anything is hidden from them: no global role that can view."""
        return not self.can(Right.VIEW)


#: What beat entries and workers act as.
SYSTEM = Principal(name="system", role="admin")


def require(principal: Principal, right: Right, project: str | None = None) -> None:
    """PermissionDenied unless the principal has ``right`` in ``project`` (globally
    with none)."""
    if principal.can(right, project):
        return
    if project is None:
        raise PermissionDenied(right.value, principal.role or "none")
    role = principal.role_in(project) or "none"
    raise PermissionDenied(
        right.value,
        role,
        f"the '{right.value}' right is needed in project {project!r}; "
        f"your role there is '{role}', which does not have it",
    )


def require_somewhere(principal: Principal, right: Right) -> frozenset[str] | None:
    """The projects a list or a count may show (None: all of them);
    PermissionDenied when the principal has ``right`` in none."""
    found = principal.projects_with(right)
    if found is not None and not found:
        raise PermissionDenied(
            right.value,
            principal.role or "none",
            f"the '{right.value}' right is needed in some project; you have it in none",
        )
    return found


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
