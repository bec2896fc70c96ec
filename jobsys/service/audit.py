"""The audit trail: who did what, when, from where, and whether it was allowed.

Service functions record their change after it commits (or, with
``audit_entry``, in the same transaction); refusals (a wrong
password or token, a missing right) are recorded by the door that refused.
Global admins read all of it; a project's admins read that project's entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from jobsys.auth import Principal, Right, require_somewhere
from jobsys.context import Context
from jobsys.errors import SpecError
from jobsys.service.scope import in_projects
from jobsys.store.models import AuditEntry

MAX_PER_PAGE = 500


@dataclass(frozen=True)
class AuditInfo:
    id: int
    ts: datetime
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    source: str
    detail: dict[str, Any] | None
    #: None for what is global (sign-ins, users, projects, global tokens).
    project: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "ts": self.ts.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "source": self.source,
            "detail": self.detail,
        }


def record(
    ctx: Context,
    principal: Principal | None,
    action: str,
    target: str = "",
    *,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    source: str | None = None,
    project: str | None = None,
) -> None:
    """Write one entry; ``principal`` None for someone not signed in (give ``actor``)."""
    with ctx.sessions.begin() as session:
        session.add(
            audit_entry(
                principal,
                action,
                target,
                outcome=outcome,
                detail=detail,
                actor=actor,
                source=source,
                project=project,
            )
        )


def audit_entry(
    principal: Principal | None,
    action: str,
    target: str = "",
    *,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    source: str | None = None,
    project: str | None = None,
) -> AuditEntry:
    """``record``'s entry as an unsaved row, for a change that adds it to its own
    transaction: the entry then commits exactly when the change does, and the
    change pays for one commit instead of two (a submit does this)."""
    role = "" if principal is None else principal.role_in(project) if project else principal.role
    return AuditEntry(
        project=project,
        actor=(actor or (principal.name if principal else "anonymous"))[:200],
        role=role,
        action=action,
        target=target[:255],
        outcome=outcome,
        source=(source if source is not None else principal.source if principal else "")[:255],
        detail=detail,
    )


def list_audit(
    ctx: Context,
    principal: Principal,
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1,
    per_page: int = 100,
    project: str | None = None,
) -> tuple[list[AuditInfo], int]:
    """Entries newest first, filtered; with the total count of matches. A
    project's admin reads only that project's entries."""
    admin_of = require_somewhere(principal, Right.ADMIN)
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise SpecError({"per_page": f"pages start at 1 and hold 1 to {MAX_PER_PAGE} entries"})
    query = in_projects(select(AuditEntry), AuditEntry.project, admin_of, project or None)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    if outcome:
        query = query.where(AuditEntry.outcome == outcome)
    if since:
        query = query.where(AuditEntry.ts >= since)
    if until:
        query = query.where(AuditEntry.ts < until)
    with ctx.sessions() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(AuditEntry.ts.desc(), AuditEntry.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
        return [
            AuditInfo(
                r.id,
                r.ts,
                r.actor,
                r.role,
                r.action,
                r.target,
                r.outcome,
                r.source,
                r.detail,
                r.project,
            )
            for r in rows
        ], total
