"""Signed-in page sessions: the cookie holds a random reference, never a token.

Signing in (with a password, or a token pasted on the sign-in page) makes a
``web_sessions`` row keyed by the SHA-256 of a fresh random reference; only the
reference goes into the (signed, not encrypted) session cookie. Every page
request finds the row again, so a session ends wherever its cookie is when it
is ended here: on sign-out, when its user's password or role changes or the
user is disabled (``update_user``), when its token is revoked or expires, and
``session_hours`` after it began.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update

from jobsys.auth import Principal
from jobsys.context import Context
from jobsys.errors import Unauthenticated
from jobsys.service.audit import record
from jobsys.service.members import memberships
from jobsys.service.sign_in_throttle import SignInThrottled, sign_in_throttle
from jobsys.service.tokens import token_owner, token_principal, touch_token, verify_token
from jobsys.service.users import check_password
from jobsys.store.models import Token, User, WebSession, utcnow

#: Longer than any reference we hand out; anything past it is not ours.
MAX_REFERENCE = 200


@dataclass(frozen=True)
class StartedSession:
    """A new page session: ``reference`` goes in the cookie and nowhere else."""

    reference: str
    principal: Principal
    expires_at: datetime


def start_web_session(
    ctx: Context, *, name: str = "", password: str = "", token: str = "", source: str = ""
) -> StartedSession:
    """Sign in on the sign-in page, with a name and password or else a token.

    Password sign-ins are throttled per name and address (``check_password``);
    a token pasted here counts its failures against the address as well, since
    this page is the one door where a person (or a script posing as one) tries
    credentials by hand.
    """
    if name:
        user_id, principal = check_password(ctx, name, password, source=source)
        row = WebSession(user_id=user_id)
    else:
        throttle = sign_in_throttle(ctx)
        # Counted before the check, as a password is: concurrent tries cannot
        # all pass a count that only grows once each has been checked.
        throttle.reserve("", source)
        try:
            token_id, principal = verify_token(ctx, token, source=source)
        except SignInThrottled:
            throttle.release("", source)  # refused unchecked: not a try
            raise
        except Unauthenticated:
            record(ctx, None, "login", "token", outcome="denied", source=source)
            raise
        throttle.release("", source)
        row = WebSession(token_id=token_id)
    return _open(ctx, row, principal)


def open_user_session(ctx: Context, user_id: int, principal: Principal) -> StartedSession:
    """A page session for a user someone else vouched for: an identity provider
    whose answer ``oidc_users.oidc_sign_in`` checked."""
    return _open(ctx, WebSession(user_id=user_id), principal)


def _open(ctx: Context, row: WebSession, principal: Principal) -> StartedSession:
    reference = secrets.token_urlsafe(32)
    now = utcnow()
    row.id = _digest(reference)
    row.created_at = now
    row.expires_at = now + timedelta(hours=ctx.settings.session_hours)
    with ctx.sessions.begin() as session:
        # Sessions that ended or expired are of no further use; sweeping them
        # here keeps the table as small as the sessions signed in lately.
        session.execute(
            delete(WebSession).where(
                or_(WebSession.ended_at.is_not(None), WebSession.expires_at <= now)
            )
        )
        session.add(row)
    return StartedSession(reference, principal, row.expires_at)


def session_principal(ctx: Context, reference: str | None, *, source: str = "") -> Principal:
    """Who a page session acts as now (their current role), or Unauthenticated
    saying why the session is over."""
    if not reference or len(reference) > MAX_REFERENCE:
        raise Unauthenticated("sign in first")
    now = utcnow()
    with ctx.sessions() as session:
        row = session.get(WebSession, _digest(reference))
        if row is None or row.ended_at is not None:
            raise Unauthenticated(
                "your session ended (signed out, or your password or role changed); sign in again"
            )
        if row.expires_at <= now:
            raise Unauthenticated(
                f"your session expired after {ctx.settings.session_hours:g} hours; sign in again"
            )
        if row.user_id is not None:
            user = session.get(User, row.user_id)
            if user is None or user.disabled_at is not None:
                raise Unauthenticated("your user no longer exists or was disabled; sign in again")
            return Principal(user.name, user.role, source, memberships(session, user.id))
        token = session.get(Token, row.token_id)
        if token is None:
            raise Unauthenticated("the token of this session is gone; sign in again")
        owner = token_owner(session, token)
    principal = token_principal(token, owner, source=source)
    touch_token(ctx, token)
    return principal


def end_web_session(ctx: Context, reference: str | None) -> None:
    """Sign out: the session's row ends, so a copy of the cookie is worth nothing."""
    if not reference or len(reference) > MAX_REFERENCE:
        return
    with ctx.sessions.begin() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.id == _digest(reference), WebSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )


def _digest(reference: str) -> str:
    """The row id: a stolen database copy holds no cookie value that works."""
    return hashlib.sha256(reference.encode()).hexdigest()
