"""API tokens: created by an admin (or the CLI), looked up on every request.

A token acts in one project (``project``), or globally (admin tokens made
without a project, as before projects existed). It may expire (``expires_at``);
a user's token acts with the lesser of its own role and its user's role there
*now*, so demoting a user demotes their tokens at their next request.
``last_used_at`` is written at most once a minute per token: a database write on
every request would cost more than the request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update

from jobsys.auth import (
    SYSTEM,
    Principal,
    Right,
    check_role,
    hash_secret,
    higher_role,
    lesser_role,
    new_token,
    require,
    require_somewhere,
    split_token,
    verify_secret,
)
from jobsys.context import Context
from jobsys.errors import NotFoundError, SpecError, Unauthenticated
from jobsys.service.audit import record
from jobsys.service.projects import check_project_name
from jobsys.service.sign_in_throttle import SignInThrottled, sign_in_throttle
from jobsys.service.users import require_project, role_in_project, role_within
from jobsys.specs import DEFAULT_PROJECT
from jobsys.store.models import ProjectMember, Token, User, utcnow

#: ``last_used_at`` is written when it is at least this old.
TOUCH_EVERY = timedelta(seconds=60)
#: The longest lifetime a token may be given (about 20 years): past it a
#: datetime overflows, and "never" is spelled by giving none.
MAX_EXPIRES_IN_S = 20 * 366 * 24 * 3600


@dataclass(frozen=True)
class IssuedToken:
    name: str
    role: str
    token: str
    expires_at: datetime | None = None
    project: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "project": self.project,
            "token": self.token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def create_token(
    ctx: Context,
    principal: Principal,
    *,
    name: str,
    role: str,
    user: str | None = None,
    expires_in_s: int | None = None,
    project: str | None = None,
    global_token: bool = False,
) -> IssuedToken:
    """Create a token; the plain token is returned once and only its hash is kept.

    It acts in ``project``; with none, an ``admin`` token is global (as admin
    tokens were before projects) and any other acts in ``default``;
    ``global_token`` makes a global one of any role. Global tokens are for
    global admins to make; a project's admin makes that project's. A token for
    a ``user`` acts as that user (its name is theirs) with at most their role
    there (checked again on every request), and stops working when they are
    disabled. With ``expires_in_s`` it is refused (401) after that long.
    """
    check_role(role)
    if project is None and not global_token and role != "admin":
        project = DEFAULT_PROJECT
    if project is not None:
        check_project_name(project)
    require(principal, Right.ADMIN, project)
    if not name.strip() or len(name) > 200:
        raise SpecError({"name": "give the token a name of 1 to 200 characters"})
    expires_at = None
    if expires_in_s is not None:
        if (
            isinstance(expires_in_s, bool)
            or not isinstance(expires_in_s, int)
            or not 0 < expires_in_s <= MAX_EXPIRES_IN_S
        ):
            raise SpecError(
                {
                    "expires_in_s": f"give a whole number of seconds from 1 to {MAX_EXPIRES_IN_S}"
                    " (e.g. 7776000 for 90 days), or leave it out for a token that does not expire"
                }
            )
        expires_at = utcnow() + timedelta(seconds=expires_in_s)
    token, key_id = new_token()
    with ctx.sessions.begin() as session:
        if project is not None:
            require_project(session, project)
        owner = None
        if user is not None:
            owner = session.scalar(select(User).where(User.name == user))
            if owner is None:
                raise NotFoundError(f"no user named {user!r} (add one with 'jobsys users add')")
            has = role_in_project(session, owner, project)
            if not role_within(has, role):
                where = "globally" if project is None else f"in project {project!r}"
                raise SpecError(
                    {"role": f"{user} is {has or 'nothing'} {where}; a token may not carry more"}
                )
            name = owner.name
        elif session.scalar(select(User.id).where(User.name == name.strip())) is not None:
            # Names are identities: results unpickle for the job's code owner by name.
            raise SpecError(
                {
                    "name": f"a user named {name.strip()!r} exists, and a token with their name "
                    f"would act as them; make it theirs (user {name.strip()!r}, --user in "
                    "the CLI) or pick another name"
                }
            )
        session.add(
            Token(
                name=name.strip(),
                role=role,
                key_id=key_id,
                token_hash=hash_secret(token),
                user_id=owner.id if owner else None,
                expires_at=expires_at,
                project=project,
            )
        )
    detail: dict[str, object] = {"role": role, "project": project}
    if expires_at is not None:
        detail["expires_at"] = expires_at.isoformat()
    record(ctx, principal, "token.create", name.strip(), detail=detail, project=project)
    return IssuedToken(
        name=name.strip(), role=role, token=token, expires_at=expires_at, project=project
    )


@dataclass(frozen=True)
class TokenInfo:
    """A token as admins see it: never the token itself."""

    id: int
    name: str
    role: str
    key_id: str
    user: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    expires_at: datetime | None = None
    project: str | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def state(self) -> str:
        return "revoked" if self.revoked else "expired" if self.expired else "active"

    def to_dict(self) -> dict[str, object]:
        """``last_used_at`` is exact to about a minute (it is written at most that often)."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "project": self.project,
            "key_id": self.key_id,
            "user": self.user,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "expired": self.expired,
            "revoked": self.revoked,
        }


def list_tokens(ctx: Context, principal: Principal) -> list[TokenInfo]:
    """Every token for a global admin; a project's admin sees that project's."""
    admin_of = require_somewhere(principal, Right.ADMIN)
    query = select(Token, User.name).outerjoin(User, User.id == Token.user_id)
    if admin_of is not None:
        query = query.where(Token.project.in_(admin_of))
    with ctx.sessions() as session:
        rows = session.execute(query.order_by(Token.id))
        return [
            TokenInfo(
                t.id,
                t.name,
                t.role,
                t.key_id,
                user,
                t.created_at,
                t.last_used_at,
                t.revoked_at is not None,
                t.expires_at,
                t.project,
            )
            for t, user in rows
        ]


def revoke_token(ctx: Context, principal: Principal, token_id: int) -> None:
    """Revoke a token at once; it is kept (revoked) so the audit trail still reads."""
    require_somewhere(principal, Right.ADMIN)
    if not 0 < token_id < 2**63:  # past the database's integers; no token has it
        raise NotFoundError(f"no token with id {token_id}")
    with ctx.sessions.begin() as session:
        row = session.get(Token, token_id)
        # Another project's token is not found, as its other objects are not.
        if row is None or not principal.can(Right.ADMIN, row.project):
            raise NotFoundError(f"no token with id {token_id}")
        row.revoked_at = row.revoked_at or utcnow()
        name, project = row.name, row.project
    record(ctx, principal, "token.revoke", name, detail={"id": token_id}, project=project)


def authenticate(ctx: Context, token: str | None, *, source: str = "") -> Principal:
    """The principal a bearer token acts as, checked on every request: revoked,
    expired and disabled-user tokens are refused, and a user's token has at most
    the user's current role."""
    return verify_token(ctx, token, source=source)[1]


def verify_token(ctx: Context, token: str | None, *, source: str = "") -> tuple[int, Principal]:
    """``authenticate`` that also gives the token's id (for a web session)."""
    if not token:
        raise Unauthenticated(
            "no token: send 'Authorization: Bearer <token>' (create one with "
            "'jobsys token create --role admin')"
        )
    parts = split_token(token)
    if parts is None:
        raise Unauthenticated("malformed token: tokens look like jst_<12 hex>.<secret>")
    # One read, in a session that takes no write lock: every request pays it.
    # Still one row per request (a revoked token stops at once), but a Core
    # read of a statement built once on a bare connection: no ORM objects, no
    # statement to build, no session.
    with ctx.sessions.reading_connection() as conn:
        found = conn.execute(_TOKEN_READ, {"key_id": parts[0]}).first()
    row: Any = found
    owner: Any = None
    if found is not None and found.owner_id is not None:
        owner = _Owner(
            role=higher_role(found.owner_role, found.member_role or ""),
            disabled_at=found.owner_disabled_at,
        )
    # Verified outside any transaction: on SQLite a transaction holds the write lock.
    if row is None or not _verified(ctx, token, row):
        raise Unauthenticated("unknown or revoked token")
    principal = token_principal(row, owner, source=source)
    touch_token(ctx, row)
    return row.id, principal


#: The token row a request's bearer token names, with its user's role and state.
_TOKEN_READ = (
    select(
        Token.id,
        Token.name,
        Token.role,
        Token.user_id,
        Token.key_id,
        Token.token_hash,
        Token.last_used_at,
        Token.revoked_at,
        Token.expires_at,
        Token.project,
        User.id.label("owner_id"),
        User.role.label("owner_role"),
        User.disabled_at.label("owner_disabled_at"),
        ProjectMember.role.label("member_role"),
    )
    .outerjoin(User, User.id == Token.user_id)
    .outerjoin(
        ProjectMember,
        (ProjectMember.user_id == Token.user_id) & (ProjectMember.project == Token.project),
    )
    .where(Token.key_id == bindparam("key_id"), Token.revoked_at.is_(None))
)


@dataclass(frozen=True)
class _Owner:
    """What ``token_principal`` reads of a token's user: their role where the
    token acts (globally, or the higher of global and member role in its project)."""

    role: str
    disabled_at: datetime | None


def token_owner(session: Any, token: Token) -> _Owner | None:
    """``_Owner`` of a token row (ORM), for a page session opened with a token."""
    if token.user_id is None:
        return None
    user = session.get(User, token.user_id)
    if user is None:
        return None
    return _Owner(role=role_in_project(session, user, token.project), disabled_at=user.disabled_at)


def token_principal(row: Any, owner: Any, *, source: str = "") -> Principal:
    """What a verified token row acts as now; Unauthenticated naming why it cannot.

    Only called once the secret has been verified, so an expiry is told only to
    whoever holds the token.
    """
    if row.revoked_at is not None:
        raise Unauthenticated(f"token {row.key_id} ({row.name}) was revoked")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthenticated(
            f"token {row.key_id} ({row.name}) expired at {row.expires_at.isoformat()}; "
            "ask an admin for a new one (jobsys token create --expires-in 90d)"
        )
    role = row.role
    if row.user_id is not None:
        if owner is None or owner.disabled_at is not None:
            raise Unauthenticated(f"the user of this token ({row.name}) is disabled")
        role = lesser_role(row.role, owner.role)
    if row.project is None:
        return Principal(name=row.name, role=role, source=source)
    return Principal(name=row.name, source=source, projects=((row.project, role),))


def touch_token(ctx: Context, row: Any) -> None:
    """Record that the token was used, at most once a ``TOUCH_EVERY`` per token.

    The row just read says when it was last written, so most requests write
    nothing; the ``WHERE`` keeps two processes that both saw an old time from
    writing twice.
    """
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < TOUCH_EVERY:
        return
    with ctx.sessions.begin() as session:
        session.execute(
            update(Token)
            .where(
                Token.id == row.id,
                or_(Token.last_used_at.is_(None), Token.last_used_at <= now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
        )


#: Tokens this process has verified (by their SHA-256, kept only in memory) ->
#: token row id, so the scrypt cost is paid once per process and token. The row
#: is still read on every request: a revoked token stops at once.
_VERIFIED: dict[str, int] = {}
_MAX_VERIFIED = 10_000


def _verified(ctx: Context, token: str, row: Any) -> bool:
    """Whether ``token`` is ``row``'s, paying a scrypt hash only when this process
    has not accepted it before.

    ``jst_<a real key id>.<anything>`` costs a hash, so that hash is bounded like
    a password's: it takes one of the process's hash slots (none free within
    0.2 s: 429), and after ``token_max_failures`` wrong secrets for one key id
    within the sign-in window that key id is refused (429, Retry-After) before
    any hash. The count is reserved before the hash (concurrent guesses cannot
    all pass) and a right secret takes its reservation back. While a key id is
    refused, its real token still works in each process that accepted it
    before (the cache below is read first); a process that has not gets 429 too.
    """
    seen = hashlib.sha256(token.encode()).hexdigest()
    if _VERIFIED.get(seen) == row.id:
        return True
    throttle = sign_in_throttle(ctx)
    throttle.reserve_token(row.key_id, limit=ctx.settings.token_max_failures)
    try:
        with throttle.hashing("tokens"):
            good = verify_secret(token, row.token_hash)
    except SignInThrottled:
        throttle.release_token(row.key_id)  # no slot: the secret was not checked
        raise
    if not good:
        return False  # the reservation stays: it is this failure's count
    throttle.release_token(row.key_id)
    if len(_VERIFIED) >= _MAX_VERIFIED:
        _VERIFIED.clear()
    _VERIFIED[seen] = row.id
    return True


def bootstrap_token(ctx: Context, path: Path) -> IssuedToken | None:
    """On a database with no tokens, create an admin token and save it at ``path`` (0600).

    This is how ``make run`` hands a first-time user a working token without
    any set-up; it does nothing once any token exists.
    """
    with ctx.sessions() as session:
        if session.scalar(select(func.count()).select_from(Token)):
            return None
    issued = create_token(ctx, SYSTEM, name="local-admin", role="admin")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(issued.token + "\n")
    return issued
