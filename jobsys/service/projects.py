"""Projects and who belongs to them: a team's space, and a role per member.

Global admins make projects and grant roles in them. Everything else (jobs,
templates, schedules, secrets, tokens, audit entries) belongs to one project,
and every service function reads and acts only within the caller's projects:
an object of another project is "not found", so its existence does not leak.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from jobsys.auth import Principal, Right, check_role, require, require_somewhere
from jobsys.context import Context
from jobsys.errors import NotFoundError, SpecError
from jobsys.service.audit import record
from jobsys.service.users import end_sessions_of, find_user, grant_role, require_project
from jobsys.specs import DEFAULT_PROJECT, PROJECT_NAME
from jobsys.store.models import Project, ProjectMember, User


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    description: str
    created_at: datetime
    created_by: str
    #: Member name -> role; only for those who may see the members (global admins).
    members: dict[str, str] | None = None

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }
        if self.members is not None:
            data["members"] = self.members
        return data


def check_project_name(name: Any, field: str = "project") -> str:
    if not isinstance(name, str) or not PROJECT_NAME.match(name):
        raise SpecError(
            {
                field: "give a project name of 1 to 64 characters: lower-case letters, digits, "
                "'_' and '-', starting with a letter or digit"
            }
        )
    return name


def create_project(
    ctx: Context, principal: Principal, name: Any, *, description: Any = ""
) -> ProjectInfo:
    require(principal, Right.ADMIN)
    check_project_name(name, "name")
    if not isinstance(description, str) or len(description) > 2000:
        raise SpecError({"description": "give a description of at most 2,000 characters"})
    row = Project(name=name, description=description, created_by=principal.name)
    with ctx.sessions() as session:
        try:
            with session.begin():
                session.add(row)
        except IntegrityError as exc:
            raise SpecError({"name": f"a project named {name!r} exists"}) from exc
    record(ctx, principal, "project.add", name)
    return ProjectInfo(row.name, row.description, row.created_at, row.created_by, {})


def list_projects(ctx: Context, principal: Principal) -> list[ProjectInfo]:
    """The projects the caller belongs to (every one for a global role); global
    admins also see each one's members."""
    visible = require_somewhere(principal, Right.VIEW)
    admin = principal.can(Right.ADMIN)
    with ctx.sessions.reading() as session:
        query = select(Project).order_by(Project.name)
        if visible is not None:
            query = query.where(Project.name.in_(visible))
        rows = list(session.scalars(query))
        members: dict[str, dict[str, str]] = {r.name: {} for r in rows}
        if admin:
            for project, user, role in session.execute(
                select(ProjectMember.project, User.name, ProjectMember.role)
                .join(User, User.id == ProjectMember.user_id)
                .order_by(User.name)
            ):
                members.setdefault(project, {})[user] = role
    return [
        ProjectInfo(
            r.name, r.description, r.created_at, r.created_by, members[r.name] if admin else None
        )
        for r in rows
    ]


def set_member(
    ctx: Context, principal: Principal, project: str, user: str, role: Any
) -> dict[str, str]:
    """Give ``user`` ``role`` in ``project`` (replacing the one they had). A
    lowered role ends the user's web sessions, as a changed global role does."""
    require(principal, Right.ADMIN)
    check_role(role if isinstance(role, str) else "")
    check_project_name(project)
    with ctx.sessions.begin() as session:
        require_project(session, project)
        row = find_user(session, user)
        before = grant_role(session, row.id, project, role)
        if before and before != role:
            end_sessions_of(session, row.id)
    record(ctx, principal, "project.grant", f"{project}/{user}", detail={"role": role})
    return {"project": project, "user": user, "role": role}


def remove_member(ctx: Context, principal: Principal, project: str, user: str) -> None:
    require(principal, Right.ADMIN)
    check_project_name(project)
    with ctx.sessions.begin() as session:
        require_project(session, project)
        row = find_user(session, user)
        gone = session.execute(
            delete(ProjectMember).where(
                ProjectMember.project == project, ProjectMember.user_id == row.id
            )
        )
        if not gone.rowcount:
            raise NotFoundError(f"{user} is not a member of project {project!r}")
        end_sessions_of(session, row.id)
    record(ctx, principal, "project.revoke", f"{project}/{user}")


def acting_project(principal: Principal, project: Any, right: Right) -> str:
    """The project a new object goes into, or a name is looked up in: the one
    named, else ``default`` or, when ``default`` is not theirs, the caller's
    only project with ``right``; a caller with several is asked to name one
    (SpecError). The caller's ``right`` there is checked by whoever acts."""
    if project is not None:
        return check_project_name(project)
    if principal.can(right, DEFAULT_PROJECT):
        return DEFAULT_PROJECT
    found = sorted(principal.projects_with(right) or ())
    if len(found) == 1:
        return found[0]
    if found:
        raise SpecError(
            {"project": f"name the project (?project=, --project): you have {', '.join(found)}"}
        )
    return DEFAULT_PROJECT


def named_project(data: Any) -> Any:
    """The ``"project"`` a request body names (None when it names none)."""
    return data.get("project") if isinstance(data, Mapping) else None


def new_object_project(
    ctx: Context, principal: Principal, named: Any, right: Right, *, session: Any = None
) -> str:
    """``acting_project``, checked: a project the caller cannot see is not found
    (as its objects are not), and one named by a caller with a global role must
    exist. A member's project exists: memberships and tokens hold it."""
    project = acting_project(principal, named, right)
    missing = f"no project named {project!r}"
    visible_or_missing(principal, project, missing)
    if project != DEFAULT_PROJECT and principal.projects_with(Right.VIEW) is None:
        if session is not None:
            found = session.get(Project, project)
        else:
            with ctx.sessions.reading() as own:
                found = own.get(Project, project)
        if found is None:
            raise NotFoundError(missing + " (a global admin adds one: jobsys projects add NAME)")
    return project


def visible_or_missing(principal: Principal, project: str, what: str) -> None:
    """NotFoundError (``what`` names the object) when the principal may not even
    see ``project``: another project's object is not found, not forbidden."""
    if not principal.can(Right.VIEW, project):
        raise NotFoundError(what)
