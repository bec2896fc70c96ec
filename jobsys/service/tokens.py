"""API tokens: created by an admin (or the CLI), looked up on every request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update

from jobsys.auth import SYSTEM, Principal, Right, check_role, hash_token, new_token, require
from jobsys.context import Context
from jobsys.errors import SpecError, Unauthenticated
from jobsys.models import Token, utcnow


@dataclass(frozen=True)
class IssuedToken:
    name: str
    role: str
    token: str


def create_token(ctx: Context, principal: Principal, *, name: str, role: str) -> IssuedToken:
    """Create a token; the plain token is returned once and only its hash is kept."""
    require(principal, Right.ADMIN)
    check_role(role)
    if not name.strip() or len(name) > 200:
        raise SpecError({"name": "give the token a name of 1 to 200 characters"})
    token = new_token()
    with ctx.sessions.begin() as session:
        session.add(Token(name=name.strip(), role=role, token_hash=hash_token(token)))
    return IssuedToken(name=name.strip(), role=role, token=token)


def authenticate(ctx: Context, token: str | None) -> Principal:
    if not token:
        raise Unauthenticated(
            "no token: send 'Authorization: Bearer <token>' (create one with "
            "'jobsys token create --role admin')"
        )
    digest = hash_token(token)
    with ctx.sessions.begin() as session:
        row = session.scalar(
            select(Token).where(Token.token_hash == digest, Token.revoked_at.is_(None))
        )
        if row is None:
            raise Unauthenticated("unknown or revoked token")
        session.execute(update(Token).where(Token.id == row.id).values(last_used_at=utcnow()))
        return Principal(name=row.name, role=row.role)


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
