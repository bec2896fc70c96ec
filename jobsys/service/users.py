"""Users who sign in to the web UI with a password, managed by admins.

Passwords are kept as scrypt hashes (werkzeug's ``generate_password_hash``).
A user's tokens act for them, with at most the user's current role: disabling
the user stops their tokens at the next request, and a role or password change
(or a disable) ends their web sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from jobsys.auth import SYSTEM, Principal, Right, check_role, require
from jobsys.context import Context
from jobsys.errors import NotFoundError, SpecError, Unauthenticated
from jobsys.service.audit import record
from jobsys.service.sign_in_throttle import SignInThrottled, sign_in_throttle
from jobsys.store.models import Token, User, WebSession, utcnow

log = logging.getLogger(__name__)

MIN_PASSWORD = 8
#: Roles from least to most: a user's token may not carry more than the user has.
ROLE_ORDER = ("viewer", "operator", "developer", "admin")
#: Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password")


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    created_at: datetime
    last_login_at: datetime | None
    disabled: bool

    @classmethod
    def of(cls, row: User) -> UserInfo:
        return cls(
            row.name, row.role, row.created_at, row.last_login_at, row.disabled_at is not None
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
            "disabled": self.disabled,
        }


def add_user(
    ctx: Context, principal: Principal, *, name: str, password: str, role: str
) -> UserInfo:
    require(principal, Right.ADMIN)
    problems: dict[str, str] = {}
    name = name.strip()
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        problems["name"] = "give a name of 1 to 200 characters without spaces"
    if len(password) < MIN_PASSWORD:
        problems["password"] = f"give a password of at least {MIN_PASSWORD} characters"
    try:
        check_role(role)
    except SpecError as exc:
        problems.update(exc.fields)
    if name == SYSTEM.name:
        problems["name"] = f"{SYSTEM.name!r} is what jobsys itself acts as; pick another name"
    if problems:
        raise SpecError(problems)
    row = User(name=name, password_hash=generate_password_hash(password), role=role)
    with ctx.sessions() as session:
        try:
            with session.begin():
                # Names are identities (results unpickle for their code owner by
                # name): a user may not take the name of a service token.
                clash = select(Token.id).where(Token.name == name, Token.user_id.is_(None))
                if session.scalar(clash.limit(1)) is not None:
                    raise SpecError(
                        {"name": f"a service token is named {name!r}; pick another name"}
                    )
                session.add(row)
        except IntegrityError as exc:
            raise SpecError({"name": f"a user named {name!r} exists"}) from exc
    record(ctx, principal, "user.add", name, detail={"role": role})
    return UserInfo.of(row)


def update_user(
    ctx: Context,
    principal: Principal,
    name: str,
    *,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
) -> UserInfo:
    require(principal, Right.ADMIN)
    if role is not None:
        check_role(role)
    if password is not None and len(password) < MIN_PASSWORD:
        raise SpecError({"password": f"give a password of at least {MIN_PASSWORD} characters"})
    # Hashed before the transaction: on SQLite a transaction holds the write lock.
    new_hash = generate_password_hash(password) if password is not None else None
    with ctx.sessions.begin() as session:
        row = _find(session, name)
        ends_sessions = new_hash is not None or bool(disabled) or role not in (None, row.role)
        if role is not None:
            row.role = role
        if new_hash is not None:
            row.password_hash = new_hash
        if disabled is not None:
            row.disabled_at = utcnow() if disabled else None
        if ends_sessions:
            _end_sessions_of(session, row.id)
        info = UserInfo.of(row)
    if new_hash is not None:  # a new password is a fresh start for the name
        sign_in_throttle(ctx).succeeded(info.name)
    changed = {"role": role, "password": password is not None or None, "disabled": disabled}
    record(
        ctx,
        principal,
        "user.update",
        name,
        detail={k: v for k, v in changed.items() if v is not None},
    )
    return info


def list_users(ctx: Context, principal: Principal) -> list[UserInfo]:
    require(principal, Right.ADMIN)
    with ctx.sessions() as session:
        return [UserInfo.of(r) for r in session.scalars(select(User).order_by(User.name))]


def sign_in(ctx: Context, name: str, password: str, *, source: str = "") -> Principal:
    """Check a name and password; Unauthenticated (and an audit entry) when wrong,
    SignInThrottled (429) after too many failures for the name or the address."""
    return check_password(ctx, name, password, source=source)[1]


def check_password(
    ctx: Context, name: str, password: str, *, source: str = ""
) -> tuple[int, Principal]:
    """``sign_in`` that also gives the user's id (for a web session)."""
    throttle = sign_in_throttle(ctx)
    try:
        # Counted before the hash, not after: checked first and counted after,
        # concurrent guesses all passed the check (4 per burst per process).
        throttle.reserve(name, source)
    except SignInThrottled:
        # Not audited: the failures that led here were, and a flood of refusals
        # would otherwise cost a database write each.
        log.warning("sign-in for %r from %s throttled", name[:200], source)
        raise
    with ctx.sessions() as session:
        row = session.execute(
            select(User.id, User.name, User.role, User.password_hash, User.disabled_at).where(
                User.name == name
            )
        ).first()
    # Verified after the read's transaction has ended: on SQLite every transaction
    # takes the write lock (BEGIN IMMEDIATE), and scrypt takes ~100 ms, so a hash
    # computed inside one stalls every reader and writer of the stack.
    try:
        with throttle.hashing("sign-ins"):
            good = check_password_hash(row.password_hash if row else _DUMMY_HASH, password)
    except SignInThrottled:
        throttle.release(name, source)  # no slot: the password was not checked
        raise
    if row is None or not good or row.disabled_at is not None:
        # The reservation stays: it is this failure's count.
        record(ctx, None, "login", name, outcome="denied", actor=name or "anonymous", source=source)
        raise Unauthenticated("wrong name or password, or the user is disabled")
    with ctx.sessions.begin() as session:
        session.execute(update(User).where(User.id == row.id).values(last_login_at=utcnow()))
    throttle.succeeded(name, source)
    principal = Principal(row.name, row.role, source)
    record(ctx, principal, "login", name)
    return row.id, principal


def role_within(user_role: str, token_role: str) -> bool:
    return ROLE_ORDER.index(token_role) <= ROLE_ORDER.index(user_role)


def lesser_role(first: str, second: str) -> str:
    """The role with fewer rights: what a user's token acts with (its own role,
    capped by the user's role now, not the one they had when it was made)."""
    return min(first, second, key=ROLE_ORDER.index)


def _end_sessions_of(session: Session, user_id: int) -> None:
    """End the user's web sessions, those opened with their tokens included."""
    session.execute(
        update(WebSession)
        .where(
            WebSession.ended_at.is_(None),
            or_(
                WebSession.user_id == user_id,
                WebSession.token_id.in_(select(Token.id).where(Token.user_id == user_id)),
            ),
        )
        .values(ended_at=utcnow())
    )


def _find(session: Session, name: str) -> User:
    row = session.scalar(select(User).where(User.name == name))
    if row is None:
        raise NotFoundError(f"no user named {name!r}")
    return row
