"""Schedules: create, edit, enable, disable, delete, read, and run one now.

Every change sets ``next_fire_at`` (or clears it when disabled) in the same
transaction, and beat reads only that column; so beat notices a new, edited,
disabled or deleted schedule on its next pass, within a second, without a restart.

Pickled values in a schedule's job spec are stored signed, as they are on a
job's steps, and bound to this schedule: whoever can write to the database
still cannot make beat submit code nobody with the right signed, nor move a
blob from a job or another schedule into this one.

A schedule acts for its owner as they are *now* (``schedule_principal``):
each firing and each run-now checks its spec against today's settings and the
owner's current role, so a demoted or disabled owner's schedule records a
failed run (and a run-now is refused) instead of starting a job.

A schedule belongs to a project and starts its jobs there; its name is unique
within the project. A reference is its id, or its name within a project (by
default ``default``, or the caller's only project).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobsys.auth import Principal, Right, lesser_role, require, require_somewhere, role_rank
from jobsys.context import Context
from jobsys.envelope import is_pickled, sign_wire, unsign_for_wire
from jobsys.errors import NotFoundError, PermissionDenied, SignatureError, SpecError
from jobsys.schedule_spec import ScheduleSpec, merge_patch, parse_schedule
from jobsys.service.audit import record
from jobsys.service.catalog import lookup_template, new_template_job, require_template
from jobsys.service.jobs import get_job, job_detail, new_job, publish_job
from jobsys.service.projects import (
    acting_project,
    named_project,
    new_object_project,
)
from jobsys.service.records import JobInfo, ScheduleInfo, ScheduleRunInfo
from jobsys.service.scope import in_projects
from jobsys.service.users import role_in_project
from jobsys.signing import Binding, Purpose
from jobsys.store.models import (
    Job,
    Schedule,
    ScheduleRun,
    Token,
    User,
    new_id,
    utcnow,
)
from jobsys.timing import Timing

MAX_RUNS_PAGE = 500

#: Fields whose change moves the next tick.
_TIMING_FIELDS = frozenset({"cron", "interval_s", "timezone", "enabled"})


def create_schedule(
    ctx: Context, principal: Principal, data: Any, *, now: datetime | None = None
) -> ScheduleInfo:
    """A new schedule in the body's ``"project"`` (or the caller's default one)."""
    project = new_object_project(ctx, principal, named_project(data), Right.SCHEDULE)
    require(principal, Right.SCHEDULE, project)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "project"}
    parsed = parse_schedule(data)
    # Pickles bind to the id.
    row = Schedule(id=new_id(), project=project, name=parsed.name, owner=principal.name)
    _apply(ctx, principal, row, parsed, _checked_spec(ctx, principal, parsed, row))
    row.next_fire_at = parsed.timing.next_after(now or utcnow()) if parsed.enabled else None
    with ctx.sessions() as session:
        try:
            with session.begin():
                session.add(row)
        except IntegrityError as exc:
            raise _name_taken(parsed.name, project) from exc
    record(ctx, principal, "schedule.create", parsed.name, detail={"id": row.id}, project=project)
    return get_schedule(ctx, principal, row.id)


def update_schedule(
    ctx: Context,
    principal: Principal,
    ref: str,
    patch: Any,
    *,
    now: datetime | None = None,
    project: str | None = None,
) -> ScheduleInfo:
    """Change some fields (a PATCH). A new timing, or enabling, moves the next
    tick to the first one after now; missed ticks of a disabled schedule are not
    caught up, since nobody missed them. A schedule stays in its project."""
    require_somewhere(principal, Right.SCHEDULE)
    with ctx.sessions() as session:
        try:
            with session.begin():
                row = _find(session, principal, ref, project, lock=True)
                require(principal, Right.SCHEDULE, row.project)
                parsed = merge_patch(_spec_of(row), patch)
                stored = row.spec
                if {"spec", "template", "variables"} & set(patch):
                    stored = _checked_spec(ctx, principal, parsed, row, session)
                _apply(ctx, principal, row, parsed, stored)
                if _TIMING_FIELDS & set(patch):
                    moment = now or utcnow()
                    row.next_fire_at = parsed.timing.next_after(moment) if row.enabled else None
                row.updated_at = utcnow()
        except IntegrityError as exc:
            raise _name_taken(str(patch.get("name")), row.project) from exc
    record(
        ctx,
        principal,
        "schedule.update",
        row.name,
        detail={"fields": sorted(patch)},
        project=row.project,
    )
    return get_schedule(ctx, principal, row.id)


def delete_schedule(
    ctx: Context, principal: Principal, ref: str, *, project: str | None = None
) -> None:
    """Remove a schedule and its run history; the jobs it started stay."""
    require_somewhere(principal, Right.SCHEDULE)
    with ctx.sessions.begin() as session:
        row = _find(session, principal, ref, project, lock=True)
        require(principal, Right.SCHEDULE, row.project)
        session.execute(delete(ScheduleRun).where(ScheduleRun.schedule_id == row.id))
        session.delete(row)
    record(ctx, principal, "schedule.delete", row.name, detail={"id": row.id}, project=row.project)


def get_schedule(
    ctx: Context, principal: Principal, ref: str, *, project: str | None = None
) -> ScheduleInfo:
    with ctx.sessions() as session:
        row = _find(session, principal, ref, project)
        return _info(session, row)


def list_schedules(
    ctx: Context, principal: Principal, *, project: str | None = None
) -> list[ScheduleInfo]:
    """The schedules of the caller's projects (or of ``project``), by project and name."""
    visible = require_somewhere(principal, Right.VIEW)
    query = select(Schedule).order_by(Schedule.project, Schedule.name)
    query = in_projects(query, Schedule.project, visible, project)
    with ctx.sessions() as session:
        return [_info(session, row) for row in session.scalars(query)]


def schedule_runs(
    ctx: Context, principal: Principal, ref: str, *, limit: int = 50, project: str | None = None
) -> list[ScheduleRunInfo]:
    """The schedule's runs, newest first: each tick's outcome and its job."""
    require_somewhere(principal, Right.VIEW)
    if not 1 <= limit <= MAX_RUNS_PAGE:
        raise SpecError({"limit": f"give a number from 1 to {MAX_RUNS_PAGE}"})
    with ctx.sessions() as session:
        row = _find(session, principal, ref, project)
        found = session.execute(
            select(ScheduleRun, Job.status)
            .outerjoin(Job, Job.id == ScheduleRun.job_id)
            .where(ScheduleRun.schedule_id == row.id)
            .order_by(ScheduleRun.fired_at.desc(), ScheduleRun.id.desc())
            .limit(limit)
        )
        return [ScheduleRunInfo.of(run, status) for run, status in found]


def run_schedule_now(
    ctx: Context, principal: Principal, ref: str, *, project: str | None = None
) -> JobInfo:
    """Start the schedule's job now, as the schedule would; its next tick stays.

    Needs the ``rerun`` right, not ``submit``: an operator may start a job that
    someone allowed to schedule it has already vetted. The job is made as a
    firing makes it (today's settings, the owner's current role), and a spec
    with pickled code also needs the caller's ``submit_code``: only a developer
    runs code, whoever vetted it, and a template's ``restart`` roles hold for
    the caller as they do for a rerun of its jobs. A refusal creates nothing.
    """
    require_somewhere(principal, Right.RERUN)
    moment = utcnow()
    with ctx.sessions.begin() as session:
        row = _find(session, principal, ref, project, lock=True)
        require(principal, Right.RERUN, row.project)
        if row.spec is not None and _has_pickles(row.spec):
            require(principal, Right.SUBMIT_CODE, row.project)
        if row.template is not None:
            # The job is the template's, started by the caller: its ``restart``
            # roles (those that narrow ``rerun``) are the caller's to meet.
            template = lookup_template(session, row.project, row.template)
            require_template(principal, template, "restart")
        job = schedule_job(ctx, session, row)
        job.owner = principal.name
        session.add(job)
        session.add(
            ScheduleRun(
                schedule_id=row.id,
                tick=moment,
                trigger="manual",
                outcome="submitted",
                job_id=job.id,
                note=f"run now by {principal.name}",
                fired_at=moment,
            )
        )
    record(
        ctx,
        principal,
        "schedule.run-now",
        row.name,
        detail={**job_detail(job), "job": job.id},
        project=row.project,
    )
    publish_job(ctx, job.steps[0].id)
    return get_job(ctx, principal, job.id)


def schedule_principal(session: Session, row: Schedule) -> Principal:
    """Who a schedule's jobs are submitted as: its owner with their role in the
    schedule's project *now*, never more than the role they had when they last
    saved it.

    - An owner who is a user acts with that user's current role; a disabled
      user's schedule cannot start jobs.
    - An owner who is a service token (a token with no user; its name is the
      owner) acts with the highest role among that name's live tokens; once
      every one is revoked or expired, the schedule cannot start jobs.
    - An owner that is neither was never a credential anyone outside jobsys
      holds (``system``, the local CLI): code running with jobsys's own
      settings. It keeps the role it saved with.

    Raises PermissionDenied naming why the owner cannot act.
    """
    user = session.scalar(select(User).where(User.name == row.owner))
    if user is not None:
        if user.disabled_at is not None:
            raise _owner_cannot(row, f"its owner {row.owner} is disabled")
        return _acting(row, role_in_project(session, user, row.project))
    tokens = list(
        session.execute(
            select(Token.role, Token.revoked_at, Token.expires_at).where(
                Token.name == row.owner,
                Token.user_id.is_(None),
                or_(Token.project.is_(None), Token.project == row.project),
            )
        )
    )
    if not tokens:
        return _acting(row, row.owner_role)
    now = utcnow()
    live = [
        role for role, revoked, expires in tokens if revoked is None and not _past(expires, now)
    ]
    if not live:
        raise _owner_cannot(row, f"every token of its owner {row.owner} is revoked or expired")
    return _acting(row, max(live, key=role_rank))


def _acting(row: Schedule, role_now: str) -> Principal:
    """The owner acting in the schedule's project with at most the role they saved with."""
    role = lesser_role(row.owner_role, role_now)
    return Principal(name=row.owner, source="schedule", projects=((row.project, role),))


def schedule_job(ctx: Context, session: Session, row: Schedule) -> Job:
    """An unsaved job for one run of the schedule, as its owner would submit it
    today; whoever saved its spec is the job's ``code_owner``."""
    owner = schedule_principal(session, row)
    try:
        if row.template is not None:
            template = lookup_template(session, row.project, row.template)
            return new_template_job(ctx, owner, template, row.variables or {}, session=session)
        assert row.spec is not None
        return new_job(
            ctx,
            owner,
            wire_spec(ctx, row),
            code_owner=row.code_owner or owner.name,
            session=session,
            project=row.project,
        )
    except PermissionDenied as exc:
        role = owner.role_in(row.project)
        raise PermissionDenied(
            exc.right,
            role,
            f"schedule {row.name!r} runs as its owner {owner.name}, whose role is now "
            f"'{role}': {exc.message}",
        ) from exc


def wire_spec(ctx: Context, row: Schedule) -> dict[str, Any]:
    """The stored spec as a client would send it: signatures checked (for this
    schedule) and removed. A tampered or moved pickle is a SpecError naming its
    field, raised before anything is submitted."""
    assert row.spec is not None

    def unsign(obj: Any, field: str, purpose: Purpose, position: int) -> Any:
        binding = Binding.for_schedule(purpose, row.id, position)
        try:
            return unsign_for_wire(
                obj, ctx.signer, binding, legacy=ctx.settings.accept_legacy_signatures
            )
        except SignatureError as exc:
            raise SpecError({field: f"{exc.message}; save the schedule's spec again"}) from exc

    return _map_pickles(row.spec, unsign)


def _checked_spec(
    ctx: Context,
    principal: Principal,
    parsed: ScheduleSpec,
    row: Schedule,
    session: Session | None = None,
) -> dict[str, Any] | None:
    """Check what the schedule runs as a start by ``principal`` would be checked, and
    return the spec to store (its pickles signed for this schedule), or None for a
    template.

    Inside a caller's transaction, pass its ``session``: on SQLite a second one
    would wait on the first's write lock until the busy timeout (30 s) gave up."""
    if parsed.template is not None:
        try:
            if session is not None:
                template = lookup_template(session, row.project, parsed.template)
            else:
                with ctx.sessions() as own:
                    template = lookup_template(own, row.project, parsed.template)
        except NotFoundError as exc:
            raise SpecError({"template": exc.message}) from exc
        new_template_job(ctx, principal, template, parsed.variables, session=session)
        return None
    assert parsed.spec is not None
    return _sign_spec(ctx, principal, parsed.spec, row, session)


def _sign_spec(
    ctx: Context,
    principal: Principal,
    spec: dict[str, Any],
    row: Schedule,
    session: Session | None = None,
) -> dict[str, Any]:
    """Check the job spec as a submission by ``principal`` in the schedule's
    project would be, then keep it with its pickles signed for this schedule."""
    timed = sorted({"not_before", "delay_s"} & set(spec))
    if timed:
        why = "a schedule's job starts at its tick: give the schedule a cron line or interval"
        raise SpecError({f"spec.{timed[0]}": why})
    try:
        new_job(ctx, principal, spec, session=session, project=row.project)
    except SpecError as exc:
        raise SpecError({f"spec.{k}": v for k, v in exc.fields.items()}) from exc
    schedule_id = row.id

    def sign(obj: Any, field: str, purpose: Purpose, position: int) -> Any:
        return sign_wire(
            obj, ctx.signer, field, Binding.for_schedule(purpose, schedule_id, position)
        )

    return _map_pickles(spec, sign)


def _map_pickles(spec: dict[str, Any], convert: Any) -> dict[str, Any]:
    """``spec`` with ``convert(value, field, purpose, position)`` applied to each
    function and item of its function steps."""
    steps = []
    for i, step in enumerate(spec.get("steps", [])):
        step = dict(step)
        if step.get("kind") == "function":
            path = f"spec.steps[{i}]"
            step["function"] = convert(
                step.get("function"), f"{path}.function", Purpose.FUNCTION, i
            )
            if isinstance(step.get("items"), list):
                step["items"] = [
                    convert(x, f"{path}.items", Purpose.ITEMS, i) for x in step["items"]
                ]
        steps.append(step)
    return {**spec, "steps": steps}


def _has_pickles(stored: dict[str, Any]) -> bool:
    found: list[bool] = []

    def note(obj: Any, *_: Any) -> Any:
        found.append(is_pickled(obj))
        return obj

    _map_pickles(stored, note)
    return any(found)


def _past(moment: datetime | None, now: datetime) -> bool:
    if moment is None:
        return False
    if moment.tzinfo is None and now.tzinfo is not None:
        moment = moment.replace(tzinfo=now.tzinfo)
    return moment <= now


def _owner_cannot(row: Schedule, why: str) -> PermissionDenied:
    return PermissionDenied(
        Right.SCHEDULE.value,
        row.owner_role,
        f"schedule {row.name!r} cannot start jobs: {why} (an admin who saves it "
        "again becomes its owner)",
    )


def _public_spec(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    if stored is None:
        return None

    def summary(obj: Any, *_: Any) -> Any:
        return "<pickled value>" if is_pickled(obj) else obj

    return _map_pickles(stored, summary)


def _apply(
    ctx: Context, principal: Principal, row: Schedule, parsed: ScheduleSpec, stored: Any
) -> None:
    row.name = parsed.name
    row.description = parsed.description
    row.cron = parsed.timing.cron
    row.interval_s = parsed.timing.interval_s
    row.timezone = parsed.timing.timezone
    row.template = parsed.template
    row.variables = parsed.variables if parsed.template else None
    row.catch_up = parsed.catch_up.value
    row.catch_up_window_s = parsed.catch_up_window_s
    row.overlap = parsed.overlap.value
    row.enabled = parsed.enabled
    if stored is not row.spec or row.code_owner is None:
        row.code_owner = principal.name  # a new spec: its code is this editor's
    row.spec = stored
    row.owner = principal.name
    row.owner_role = principal.role_in(row.project)


def _spec_of(row: Schedule) -> ScheduleSpec:
    return parse_schedule(
        {
            "name": row.name,
            "description": row.description,
            "cron": row.cron,
            "interval_s": row.interval_s,
            "timezone": row.timezone,
            "spec": row.spec,
            "template": row.template,
            "variables": row.variables,
            "catch_up": row.catch_up,
            "catch_up_window_s": row.catch_up_window_s,
            "overlap": row.overlap,
            "enabled": row.enabled,
        }
    )


def timing_of(row: Schedule) -> Timing:
    return Timing(cron=row.cron, interval_s=row.interval_s, timezone=row.timezone)


def _find(
    session: Session, principal: Principal, ref: str, project: str | None, *, lock: bool = False
) -> Schedule:
    """A schedule the principal may see, by id, or by name within ``project``
    (default: the caller's own, see ``acting_project``); another project's
    schedule is not found."""
    require_somewhere(principal, Right.VIEW)

    def first(*where: Any) -> Schedule | None:
        query = select(Schedule).where(*where)
        return session.scalar(query.with_for_update() if lock else query)

    # An id beats a name (a name may look like another schedule's id).
    row = first(Schedule.id == ref)
    if row is None:
        place = acting_project(principal, project, Right.VIEW)
        row = first(Schedule.name == ref, Schedule.project == place)
    if row is None or not principal.can(Right.VIEW, row.project):
        raise NotFoundError(f"no schedule with id or name {ref!r} (in your projects)")
    return row


def _info(session: Session, row: Schedule) -> ScheduleInfo:
    last = session.execute(
        select(ScheduleRun, Job.status)
        .outerjoin(Job, Job.id == ScheduleRun.job_id)
        .where(ScheduleRun.schedule_id == row.id)
        .order_by(ScheduleRun.fired_at.desc(), ScheduleRun.id.desc())
        .limit(1)
    ).first()
    last_run = ScheduleRunInfo.of(last[0], last[1]) if last else None
    return ScheduleInfo.of(row, _public_spec(row.spec), last_run)


def _name_taken(name: str, project: str) -> SpecError:
    return SpecError(
        {"name": f"a schedule named {name!r} exists in project {project!r}; pick another name"}
    )
