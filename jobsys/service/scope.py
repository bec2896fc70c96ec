"""Reads narrowed to the caller's projects: every list (jobs, templates,
schedules, secrets, tokens, audit entries) goes through ``in_projects``, so a
list cannot forget the caller's projects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from jobsys.store.models import Project


def in_projects(
    query: Any, column: Any, visible: frozenset[str] | None, project: str | None = None
) -> Any:
    """``query`` narrowed to the projects a caller may see (``visible``, None for
    all of them, as ``require_somewhere`` gives it) and, if given, to ``project``."""
    if visible is not None:
        query = query.where(column.in_(visible))
    if project is not None:
        query = query.where(column == project)
    return query


def all_if_every(session: Any, visible: frozenset[str] | None) -> frozenset[str] | None:
    """``visible``, or None when it holds every project there is: then the list
    needs no project filter at all, and its query keeps the index it streams
    from (a deployment with one project, or a member of all of them, pays
    nothing for projects; a tag filter's count still reads its index alone)."""
    if visible is None:
        return None
    total = session.execute(_PROJECT_COUNT).scalar_one()
    return None if len(visible) >= total else visible


#: Built once: every list by a project member asks it.
_PROJECT_COUNT = select(func.count()).select_from(Project)
