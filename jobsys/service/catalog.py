"""The job catalog: loading templates from the catalog folder into the database,
reading them, and starting one with variables.

Starting a template needs the ``start`` right (operators have it), not
``submit``: the template's steps were vetted by whoever put it in the catalog,
and variables can only fill in its placeholders (see ``jobsys.catalog``). A
template may narrow start, stop (cancel) and restart (rerun) to named roles;
jobs remember their template so the narrowing holds for them too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from jobsys.auth import Principal, Right, require
from jobsys.catalog import Broken, Template, TemplateError, load_folder, parse_template
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SpecError
from jobsys.service.audit import record
from jobsys.service.idempotency import Idempotency, store_job
from jobsys.service.jobs import build_job, get_job, job_detail, publish_job
from jobsys.service.records import JobInfo
from jobsys.store.models import CatalogEntry, Job, utcnow


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
        session.execute(delete(CatalogEntry))
        now = utcnow()
        for template in templates:
            session.add(
                CatalogEntry(
                    name=template.name,
                    source=template.source,
                    definition=_definition(template),
                    loaded_at=now,
                )
            )
        for bad in broken:
            if bad.name not in {t.name for t in templates}:
                session.add(
                    CatalogEntry(name=bad.name, source=bad.source, error=bad.error, loaded_at=now)
                )
    record(
        ctx,
        principal,
        "catalog.reload",
        str(folder or ctx.settings.catalog_dir),
        detail={"loaded": [t.name for t in templates], "broken": [b.name for b in broken]},
    )
    return Catalog(tuple(templates), tuple(broken))


def list_catalog(ctx: Context, principal: Principal) -> Catalog:
    require(principal, Right.VIEW)
    with ctx.sessions() as session:
        rows = list(session.scalars(select(CatalogEntry).order_by(CatalogEntry.name)))
    templates = tuple(_template(row) for row in rows if row.definition is not None)
    broken = tuple(
        Broken(row.name, row.source, row.error or "") for row in rows if row.definition is None
    )
    return Catalog(templates, broken)


def get_template(ctx: Context, principal: Principal, name: str) -> Template:
    require(principal, Right.VIEW)
    with ctx.sessions() as session:
        return _find(session, name)


def render_template(
    ctx: Context, principal: Principal, name: str, variables: Any
) -> dict[str, Any]:
    """The job spec a start would submit, checked like a submission, without running it."""
    require(principal, Right.VIEW)
    with ctx.sessions() as session:
        template = _find(session, name)
    spec = _render(template, variables)
    build_job(ctx, principal.name, spec)  # the same checks a start makes
    return spec


def start_template(
    ctx: Context,
    principal: Principal,
    name: str,
    variables: Any,
    *,
    once: Idempotency | None = None,
) -> JobInfo:
    """Start a job from a template; SpecError names each bad or missing variable.
    With ``once``, a repeat gets the first start's job back (see ``submit_job``)."""
    with ctx.sessions() as session:
        template = _find(session, name)
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
    job = build_job(ctx, principal.name, _render(template, values), session=session)
    job.template, job.variables = template.name, values
    return job


def require_template(principal: Principal, template: Template, action: str) -> None:
    """The base right for ``action`` and, if the template names roles for it, one of them."""
    right = {"start": Right.START, "stop": Right.CANCEL, "restart": Right.RERUN}[action]
    require(principal, right)
    if not template.allows(action, principal.role):
        allowed = ", ".join(template.roles[action])
        raise PermissionDenied(
            right.value,
            principal.role,
            f"template {template.name!r} lets only the roles {allowed} {action} its jobs; "
            f"your role is '{principal.role}'",
        )


def require_job_action(session: Session, principal: Principal, job: Job, action: str) -> None:
    """Template narrowing for cancel ("stop") and rerun/resume ("restart") of a job.
    A job whose template has left the catalog falls back to the base right."""
    if job.template is None:
        return
    row = session.get(CatalogEntry, job.template)
    if row is not None and row.definition is not None:
        require_template(principal, _template(row), action)


def lookup_template(session: Session, name: str) -> Template:
    return _find(session, name)


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


def _find(session: Session, name: str) -> Template:
    row = session.get(CatalogEntry, name)
    if row is None:
        raise NotFoundError(
            f"no template {name!r} in the catalog (GET /api/catalog lists them; "
            "reload after adding one)"
        )
    if row.definition is None:
        raise NotFoundError(f"template {name!r} is broken ({row.source}): {row.error}")
    return _template(row)


def _template(row: CatalogEntry) -> Template:
    assert row.definition is not None
    try:
        return parse_template(row.definition, row.name, row.source)
    except TemplateError as exc:  # stored by an older jobsys that accepted more
        raise NotFoundError(f"template {row.name!r} no longer loads: {exc}") from exc


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
