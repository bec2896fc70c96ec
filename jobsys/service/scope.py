"""Reads narrowed to the caller's projects: every list (jobs, templates,
schedules, secrets, tokens, audit entries) goes through ``in_projects``, so a
list cannot forget the caller's projects."""

from __future__ import annotations

from typing import Any


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
