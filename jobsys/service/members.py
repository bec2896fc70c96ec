"""A user's roles in projects, read where a principal is made (sign-in, page
sessions, tokens, schedules): its own module so that all of them can use it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from jobsys.store.models import ProjectMember


def memberships(conn: Any, user_id: int) -> tuple[tuple[str, str], ...]:
    """A user's (project, role) pairs, as a ``Principal`` carries them. ``conn``
    may be a session or a bare connection."""
    return tuple((p, r) for p, r in conn.execute(_MEMBERSHIPS, {"user_id": user_id}))


#: Built once: every signed-in request reads it.
_MEMBERSHIPS = (
    select(ProjectMember.project, ProjectMember.role)
    .where(ProjectMember.user_id == bindparam("user_id"))
    .order_by(ProjectMember.project)
)
