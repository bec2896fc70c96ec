"""Users who sign in to the web UI with a password, managed by admins.

Passwords are kept as scrypt hashes (werkzeug's ``generate_password_hash``).
A user has a role in each project they belong to (``project_members``) and may
have a global role, held in every project (global admins manage projects and
users). A user's tokens act for them, with at most the user's current role:
disabling the user stops their tokens at the next request, and a role or
password change (or a disable) ends their web sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from jobsys.auth import SYSTEM, Principal, Right, check_role, higher_role, require, role_rank
from jobsys.context import Context
from jobsys.errors import NotFoundError, SpecError, Unauthenticated
from jobsys.service.audit import record
from jobsys.service.members import memberships
from jobsys.service.sign_in_throttle import SignInThrottled, sign_in_throttle
from jobsys.specs import DEFAULT_PROJECT
from jobsys.store.models import (
    Project,
    ProjectMember,
    Token,
    User,
    WebSession,
    utcnow,
)

log = logging.getLogger(__name__)

MIN_PASSWORD = 8
#: Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password")


@dataclass(frozen=True)
class UserInfo:
    name: str
    #: The global role ("" for none).
    role: str
    created_at: datetime
    last_login_at: datetime | None
    disabled: bool
    #: Project -> the user's role there.
    projects: dict[str, str]

    @classmethod
    def of(cls, row: User, projects: tuple[tuple[str, str], ...] = ()) -> UserInfo:
        return cls(
            row.name,
            row.role,
            row.created_at,
            row.last_login_at,
            row.disabled_at is not None,
            dict(projects),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "projects": self.projects,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
            "disabled": self.disabled,
        }


def add_user(
    ctx: Context,
    principal: Principal,
    *,
    name: str,
    password: str,
    role: str,
    project: str | None = DEFAULT_PROJECT,
) -> UserInfo:
    """A new user with ``role`` in ``project`` (None: ``role`` is global, held in
    every project; ``admin`` so makes a global admin)."""
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
    row = User(
        name=name,
        password_hash=generate_password_hash(password),
        role=role if project is None else "",
    )
    with ctx.sessions() as session:
        try:
            with session.begin():
                if project is not None:
                    require_project(session, project)
                # Names are identities (results unpickle for their code owner by
                # name): a user may not take the name of a service token.
                clash = select(Token.id).where(Token.name == name, Token.user_id.is_(None))
                if session.scalar(clash.limit(1)) is not None:
                    raise SpecError(
                        {"name": f"a service token is named {name!r}; pick another name"}
                    )
                session.add(row)
                if project is not None:
                    session.flush()
                    grant_role(session, row.id, project, role)
        except IntegrityError as exc:
            raise SpecError({"name": f"a user named {name!r} exists"}) from exc
    record(ctx, principal, "user.add", name, detail={"role": role, "project": project})
    return UserInfo.of(row, ((project, role),) if project is not None else ())


def update_user(
    ctx: Context,
    principal: Principal,
    name: str,
    *,
    role: str | None = None,
    project: str | None = DEFAULT_PROJECT,
    password: str | None = None,
    disabled: bool | None = None,
) -> UserInfo:
    """Change a user: ``role`` is set in ``project`` (None: the global role, where
    "" takes it away); a password, disabling, or a changed role ends their web
    sessions."""
    require(principal, Right.ADMIN)
    if role is not None and not (project is None and role == ""):
        check_role(role)
    if password is not None and len(password) < MIN_PASSWORD:
        raise SpecError({"password": f"give a password of at least {MIN_PASSWORD} characters"})
    # Hashed before the transaction: on SQLite a transaction holds the write lock.
    new_hash = generate_password_hash(password) if password is not None else None
    with ctx.sessions.begin() as session:
        row = find_user(session, name)
        before = row.role
        if role is not None and project is not None:
            require_project(session, project)
            before = grant_role(session, row.id, project, role)
        elif role is not None:
            row.role = role
        ends_sessions = new_hash is not None or bool(disabled) or role not in (None, before)
        if new_hash is not None:
            row.password_hash = new_hash
        if disabled is not None:
            row.disabled_at = utcnow() if disabled else None
        if ends_sessions:
            end_sessions_of(session, row.id)
        session.flush()
        info = UserInfo.of(row, memberships(session, row.id))
    if new_hash is not None:  # a new password is a fresh start for the name
        sign_in_throttle(ctx).succeeded(info.name)
    changed = {
        "role": role,
        "project": (project or "(global)") if role is not None else None,
        "password": password is not None or None,
        "disabled": disabled,
    }
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
        roles: dict[int, list[tuple[str, str]]] = {}
        for user_id, project, role in session.execute(
            select(ProjectMember.user_id, ProjectMember.project, ProjectMember.role).order_by(
                ProjectMember.project
            )
        ):
            roles.setdefault(user_id, []).append((project, role))
        return [
            UserInfo.of(r, tuple(roles.get(r.id, ())))
            for r in session.scalars(select(User).order_by(User.name))
        ]


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
        projects = memberships(session, row.id)
    throttle.succeeded(name, source)
    principal = Principal(row.name, row.role, source, projects)
    record(ctx, principal, "login", name)
    return row.id, principal


def role_within(user_role: str, token_role: str) -> bool:
    """Whether a token of ``token_role`` carries no more than ``user_role`` (a
    user's token acts with the lesser of the two, read at every request)."""
    return 0 <= role_rank(token_role) <= role_rank(user_role)


def end_sessions_of(session: Session, user_id: int) -> None:
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


def role_in_project(session: Session, user: User, project: str | None) -> str:
    """The user's role in ``project`` now: the higher of their global role and
    their membership's there (``project`` None: the global role alone)."""
    if project is None:
        return user.role
    member = session.get(ProjectMember, (project, user.id))
    return higher_role(user.role, member.role if member else "")


def grant_role(session: Session, user_id: int, project: str, role: str) -> str:
    """Give the user ``role`` in ``project``; the role they had there ("" for none)."""
    member = session.get(ProjectMember, (project, user_id))
    if member is None:
        session.add(ProjectMember(project=project, user_id=user_id, role=role))
        return ""
    before, member.role = member.role, role
    return before


def require_project(session: Session, project: str) -> None:
    """NotFoundError unless ``project`` exists."""
    if session.get(Project, project) is None:
        raise NotFoundError(
            f"no project named {project!r} (a global admin adds one: jobsys projects add NAME)"
        )


def find_user(session: Session, name: str) -> User:
    row = session.scalar(select(User).where(User.name == name))
    if row is None:
        raise NotFoundError(f"no user named {name!r}")
    return row
