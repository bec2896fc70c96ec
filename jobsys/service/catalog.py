"""The job catalog: loading templates from the catalog folder into the database,
reading them, and starting one with variables.

Starting a template needs the ``start`` right (operators have it), not
``submit``: the template's steps were vetted by whoever put it in the catalog,
and variables can only fill in its placeholders (see ``jobsys.catalog``). A
template may narrow start, stop (cancel) and restart (rerun) to named roles;
jobs remember their template so the narrowing holds for them too.

A template belongs to a project (its folder's parent: ``jobs/<project>/<name>/``)
and starts jobs there; its name is unique within the project, and the calls
that take a name take the project too (by default ``default``, or the
caller's only project).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from jobsys.auth import Principal, Right, require, require_somewhere
from jobsys.catalog import Broken, Template, TemplateError, load_folder, parse_template
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SpecError
from jobsys.service.audit import record
from jobsys.service.idempotency import Idempotency, store_job
from jobsys.service.jobs import build_job, get_job, job_detail, publish_job
from jobsys.service.projects import acting_project
from jobsys.service.records import JobInfo
from jobsys.service.scope import in_projects
from jobsys.store.models import CatalogEntry, Job, Project, utcnow


@dataclass(frozen=True)
class Catalog:
    templates: tuple[Template, ...]
    broken: tuple[Broken, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "templates": [t.to_dict() for t in self.templates],
            "broken": [b.to_dict() for b in self.broken],
        }


def reload_catalog(ctx: Context, principal: Principal, folder: Path | None = None) -> Catalog:
    """Read the catalog folder again and make it the catalog every process sees.
    Broken templates are listed with their file and error; the rest load."""
    require(principal, Right.ADMIN)
    templates, broken = load_folder(folder or Path(ctx.settings.catalog_dir))
    with ctx.sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            # Two reloads at once (web workers starting together) take turns.
            session.execute(text("SELECT pg_advisory_xact_lock(7305194)"))
        known = set(session.scalars(select(Project.name)))
        broken += [
            Broken(
                t.name,
                t.source,
                f"no project named {t.project!r}: a global admin adds it "
                f"(jobsys projects add {t.project}), then reload",
                t.project,
            )
            for t in templates
            if t.project not in known
        ]
        templates = [t for t in templates if t.project in known]
        session.execute(delete(CatalogEntry))
        now = utcnow()
        for template in templates:
            session.add(
                CatalogEntry(
                    project=template.project,
                    name=template.name,
                    source=template.source,
                    definition=_definition(template),
                    loaded_at=now,
                )
            )
        loaded = {(t.project, t.name) for t in templates}
        for bad in broken:
            if bad.project in known and (bad.project, bad.name) not in loaded:
                session.add(
                    CatalogEntry(
                        project=bad.project,
                        name=bad.name,
                        source=bad.source,
                        error=bad.error,
                        loaded_at=now,
                    )
                )
    record(
        ctx,
        principal,
        "catalog.reload",
        str(folder or ctx.settings.catalog_dir),
        detail={"loaded": [t.name for t in templates], "broken": [b.name for b in broken]},
    )
    return Catalog(tuple(templates), tuple(broken))


def list_catalog(ctx: Context, principal: Principal, *, project: str | None = None) -> Catalog:
    """The templates of the caller's projects (or of ``project``)."""
    visible = require_somewhere(principal, Right.VIEW)
    query = select(CatalogEntry).order_by(CatalogEntry.project, CatalogEntry.name)
    query = in_projects(query, CatalogEntry.project, visible, project)
    with ctx.sessions() as session:
        rows = list(session.scalars(query))
    templates = tuple(_template(row) for row in rows if row.definition is not None)
    broken = tuple(
        Broken(row.name, row.source, row.error or "", row.project)
        for row in rows
        if row.definition is None
    )
    return Catalog(templates, broken)


def get_template(
    ctx: Context, principal: Principal, name: str, *, project: str | None = None
) -> Template:
    with ctx.sessions() as session:
        return _find(session, principal, name, project)


def render_template(
    ctx: Context, principal: Principal, name: str, variables: Any, *, project: str | None = None
) -> dict[str, Any]:
    """The job spec a start would submit, checked like a submission, without running it."""
    with ctx.sessions() as session:
        template = _find(session, principal, name, project)
    spec = _render(template, variables)
    build_job(ctx, principal.name, spec, project=template.project)  # a start's checks
    return spec


def start_template(
    ctx: Context,
    principal: Principal,
    name: str,
    variables: Any,
    *,
    once: Idempotency | None = None,
    project: str | None = None,
) -> JobInfo:
    """Start a job from a template; SpecError names each bad or missing variable.
    With ``once``, a repeat gets the first start's job back (see ``submit_job``)."""
    with ctx.sessions() as session:
        template = _find(session, principal, name, project)
    job = new_template_job(ctx, principal, template, variables)
    earlier = store_job(ctx, principal, job, once)
    if earlier is not None:
        return replace(get_job(ctx, principal, earlier), replayed=True)
    record(
        ctx,
        principal,
        "catalog.start",
        name,
        detail={**job_detail(job), "job": job.id, "variables": job.variables},
        project=template.project,
    )
    publish_job(ctx, job.steps[0].id)
    return get_job(ctx, principal, job.id)


def new_template_job(
    ctx: Context,
    principal: Principal,
    template: Template,
    variables: Any,
    *,
    session: Session | None = None,
) -> Job:
    """An unsaved job from a template, rights checked; for start and the scheduler
    (which passes the ``session`` of its transaction)."""
    require_template(principal, template, "start")
    try:
        values = template.values(variables or {})
    except SpecError as exc:
        raise _prefixed(exc) from exc
    job = build_job(
        ctx, principal.name, _render(template, values), project=template.project, session=session
    )
    job.template, job.variables = template.name, values
    return job


def require_template(principal: Principal, template: Template, action: str) -> None:
    """The base right for ``action`` in the template's project and, if the
    template names roles for it, one of them (the caller's role there)."""
    right = {"start": Right.START, "stop": Right.CANCEL, "restart": Right.RERUN}[action]
    require(principal, right, template.project)
    role = principal.role_in(template.project)
    if not template.allows(action, role):
        allowed = ", ".join(template.roles[action])
        raise PermissionDenied(
            right.value,
            role,
            f"template {template.name!r} lets only the roles {allowed} {action} its jobs; "
            f"your role is '{role}'",
        )


def require_job_action(session: Session, principal: Principal, job: Job, action: str) -> None:
    """Template narrowing for cancel ("stop") and rerun/resume ("restart") of a job.
    A job whose template has left the catalog falls back to the base right."""
    if job.template is None:
        return
    row = session.get(CatalogEntry, (job.project, job.template))
    if row is not None and row.definition is not None:
        require_template(principal, _template(row), action)


def lookup_template(session: Session, project: str, name: str) -> Template:
    """A template of ``project`` for a caller who checks rights themselves (the
    scheduler acts for a schedule's owner, whose rights ``new_template_job`` checks)."""
    return _loaded(session.get(CatalogEntry, (project, name)), name, project)


def _render(template: Template, variables: Any) -> dict[str, Any]:
    try:
        return template.render(variables or {})
    except SpecError as exc:
        raise _prefixed(exc) from exc


def _prefixed(exc: SpecError) -> SpecError:
    """Variable errors as the request names them: ``variables.<name>`` (a problem with
    the whole object, or the items it expands to, keeps its own name)."""
    whole = ("items", "variables")
    return SpecError({k if k in whole else f"variables.{k}": v for k, v in exc.fields.items()})


def _find(session: Session, principal: Principal, name: str, project: str | None) -> Template:
    """A template the principal may see, by name within ``project`` (default:
    the caller's own, see ``acting_project``); another project's is not found."""
    where = acting_project(principal, project, Right.VIEW)
    if not principal.can(Right.VIEW, where):
        require_somewhere(principal, Right.VIEW)
        raise NotFoundError(_missing(name, where))
    return _loaded(session.get(CatalogEntry, (where, name)), name, where)


def _loaded(row: CatalogEntry | None, name: str, project: str) -> Template:
    if row is None:
        raise NotFoundError(_missing(name, project))
    if row.definition is None:
        raise NotFoundError(f"template {name!r} is broken ({row.source}): {row.error}")
    return _template(row)


def _missing(name: str, project: str) -> str:
    return (
        f"no template {name!r} in project {project!r} (GET /api/catalog lists them; "
        "reload after adding one)"
    )


def _template(row: CatalogEntry) -> Template:
    assert row.definition is not None
    try:
        found = parse_template(row.definition, row.name, row.source)
    except TemplateError as exc:  # stored by an older jobsys that accepted more
        raise NotFoundError(f"template {row.name!r} no longer loads: {exc}") from exc
    return replace(found, project=row.project)


def _definition(template: Template) -> dict[str, Any]:
    """What to store so ``parse_template`` rebuilds the same template."""
    data: dict[str, Any] = {
        "name": template.name,
        "description": template.description,
        "steps": list(template.steps),
        "variables": {
            v.name: {k: x for k, x in v.to_dict().items() if k != "name" and x not in (None, [])}
            for v in template.variables
        },
    }
    if template.schedule:
        data["schedule"] = template.schedule
    if template.roles:
        data["roles"] = {action: list(roles) for action, roles in template.roles.items()}
    return data
