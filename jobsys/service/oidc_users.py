"""Users who sign in through OpenID Connect: made at their first sign-in, their
roles set from the provider's groups claim at every sign-in.

The web door (``webui.oidc_views``) runs the protocol with Authlib (PKCE, the
state, the token exchange, the ID token's signature, issuer, audience, expiry
and nonce) and hands this module only a verified subject, a name and the
groups. The provider's subject is the identity: a name it sends that a local
user already has is refused, never taken over.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select

from jobsys.auth import SYSTEM, Principal
from jobsys.context import Context
from jobsys.errors import SignInRefused
from jobsys.oidc_roles import granted, parse_role_rules
from jobsys.service.audit import record
from jobsys.service.members import memberships
from jobsys.service.web_sessions import StartedSession, open_user_session
from jobsys.store.models import Project, ProjectMember, Token, User, utcnow

log = logging.getLogger(__name__)

#: Never a password hash: werkzeug's check refuses it, so an OpenID user has no
#: password to guess (an admin may still give them one).
NO_PASSWORD = "!oidc"


def oidc_sign_in(
    ctx: Context, *, subject: str, name: str, groups: Any, source: str = ""
) -> StartedSession:
    """A page session for the provider's verified ``subject`` (``<issuer> <sub>``),
    whose roles are what ``groups`` maps to now (``JOBSYS_OIDC_ROLES``).

    SignInRefused, with what to do, when no group maps to a role, the name is
    another user's here, or the user is disabled; the refusal is audited."""
    rules = parse_role_rules(ctx.settings.oidc_roles)
    try:
        user_id, principal = _sign_in(ctx, rules, subject, name, groups, source)
    except SignInRefused as exc:
        record(
            ctx,
            None,
            "login",
            name,
            outcome="denied",
            actor=name or "anonymous",
            source=source,
            detail={"via": "oidc", "why": exc.message},
        )
        raise
    record(ctx, principal, "login", name, detail={"via": "oidc", "roles": principal.roles_label})
    return open_user_session(ctx, user_id, principal)


def _sign_in(
    ctx: Context, rules: Any, subject: str, name: str, groups: Any, source: str
) -> tuple[int, Principal]:
    _check_name(name)
    with ctx.sessions.begin() as session:
        grant = granted(rules, groups, session.scalars(select(Project.name)))
        if not grant:
            raise SignInRefused(
                f"you signed in at the identity provider as {name}, but none of your groups "
                f"({_listed(groups)}) gives a role in jobsys; ask an admin to add your group "
                "to JOBSYS_OIDC_ROLES, or to add you to a group it names"
            )
        user = session.scalar(select(User).where(User.oidc_subject == subject))
        if user is None:
            taken = session.scalar(select(User.id).where(User.name == name)) or session.scalar(
                select(Token.id).where(Token.name == name, Token.user_id.is_(None)).limit(1)
            )
            if taken:
                raise SignInRefused(
                    f"a user or token named {name!r} exists here already, and it is not "
                    "your identity-provider account; an admin renames one of them"
                )
            user = User(name=name, password_hash=NO_PASSWORD, oidc_subject=subject)
            session.add(user)
            session.flush()
        if user.disabled_at is not None:
            raise SignInRefused(f"the user {user.name} is disabled here; ask an admin")
        # The claim decides, every time: what it no longer gives is taken away.
        user.role = grant.role
        user.last_login_at = utcnow()
        session.execute(delete(ProjectMember).where(ProjectMember.user_id == user.id))
        session.add_all(
            ProjectMember(project=p, user_id=user.id, role=r) for p, r in grant.projects.items()
        )
        session.flush()
        principal = Principal(user.name, user.role, source, memberships(session, user.id))
        return user.id, principal


def _check_name(name: str) -> None:
    if not name or len(name) > 200 or any(c.isspace() for c in name) or name == SYSTEM.name:
        raise SignInRefused(
            f"the identity provider gave the name {name[:200]!r}, which cannot be a user "
            "name here (1 to 200 characters, no spaces)"
        )


def _listed(groups: Any) -> str:
    if isinstance(groups, list) and groups:
        return ", ".join(str(g) for g in groups[:20])
    return "none"
