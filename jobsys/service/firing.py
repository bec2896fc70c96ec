"""Firing due schedules: what the beat scheduler calls on every pass.

Each schedule fires in one transaction that locks its row, re-reads its next
tick, stores one ``ScheduleRun`` per tick together with the job it starts, and
moves the next tick on. The unique (schedule, tick) pair makes a second firing
of a tick fail as a whole, so even two schedulers that both think they lead
(a network partition, a paused process) cannot start a tick's job twice. Jobs
are claimed for publishing in that same transaction (one commit, not two,
between the tick and the broker) and published after the commit; if the broker
is down they wait in the outbox.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobsys.auth import SYSTEM
from jobsys.broker.canvas import StepPlan
from jobsys.context import Context
from jobsys.errors import JobsysError
from jobsys.schedule_spec import Overlap
from jobsys.service.audit import audit_entry
from jobsys.service.dispatching import claim_new_step, publish_claimed
from jobsys.service.jobs import job_detail
from jobsys.service.schedules import schedule_job, timing_of
from jobsys.states import JobStatus
from jobsys.store.inserts import insert_rows, job_rows
from jobsys.store.models import Base, Job, Schedule, ScheduleRun, utcnow
from jobsys.timing import CatchUp, due_ticks

log = logging.getLogger(__name__)

#: The most ticks one schedule fires in one pass (catch-up ``all``).
MAX_TICKS_PER_PASS = 100

_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class Fired:
    """One tick fired: its schedule, time, outcome and job (if one started)."""

    schedule: str
    tick: datetime
    trigger: str
    outcome: str
    job_id: str | None
    fired_at: datetime
    #: The job's first step, claimed in the firing transaction, to publish after it.
    plan: StepPlan | None = field(default=None, repr=False)


def fire_due_schedules(ctx: Context, now: datetime | None = None) -> list[Fired]:
    """Fire every enabled schedule whose next tick has come. Each job is made as
    its owner would submit it today (``schedule_job``: today's settings, the
    owner's current role). A schedule that cannot fire (its spec no longer
    passes, its owner was demoted or disabled) records a failed run naming why
    and moves on; a database error leaves its tick due for the next pass."""
    now = now or utcnow()
    with ctx.sessions() as session:
        due = list(
            session.scalars(
                select(Schedule.id)
                .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
                .order_by(Schedule.next_fire_at)
            )
        )
    fired: list[Fired] = []
    for schedule_id in due:
        try:
            fired.extend(_fire(ctx, schedule_id, now))
        except IntegrityError:
            log.warning("schedule %s: tick already fired by another scheduler", schedule_id)
    for run in fired:
        if run.plan is not None:
            publish_claimed(ctx, run.plan)
    return fired


def next_fire_time(ctx: Context) -> datetime | None:
    """The soonest next tick of any enabled schedule, for beat's sleep."""
    with ctx.sessions() as session:
        found: datetime | None = session.scalar(
            select(func.min(Schedule.next_fire_at)).where(Schedule.enabled.is_(True))
        )
        return found


def _fire(ctx: Context, schedule_id: str, now: datetime) -> list[Fired]:
    with ctx.sessions.begin() as session:
        row = session.scalar(select(Schedule).where(Schedule.id == schedule_id).with_for_update())
        if row is None or not row.enabled or row.next_fire_at is None or row.next_fire_at > now:
            return []  # deleted, disabled or fired by someone else meanwhile
        timing = timing_of(row)
        ticks = due_ticks(
            timing,
            row.next_fire_at,
            now,
            CatchUp(row.catch_up),
            timedelta(seconds=row.catch_up_window_s),
            limit=MAX_TICKS_PER_PASS,
        )
        latest = ticks[-1] if ticks else None
        fired = [
            _fire_tick(ctx, session, row, tick, "schedule" if tick == latest else "catch-up")
            for tick in ticks
        ]
        row.next_fire_at = timing.next_after(now)
        row.last_fire_at = now
        return fired


def _fire_tick(
    ctx: Context, session: Session, row: Schedule, tick: datetime, trigger: str
) -> Fired:
    run = ScheduleRun(
        schedule_id=row.id, tick=tick, trigger=trigger, fired_at=utcnow(), job_id=None, note=None
    )
    busy = _unfinished_job(session, row.id) if row.overlap == Overlap.SKIP else None
    rows: list[Base] = []
    plan = None
    if busy is not None:
        run.outcome = "skipped"
        run.note = f"skipped: the previous run, job {busy}, has not finished (overlap: skip)"
    else:
        try:
            job = schedule_job(ctx, session, row)
        except JobsysError as exc:
            run.outcome = "failed"
            run.note = f"could not start the job: {exc.message}"
            log.warning("schedule %s (%s): %s", row.name, row.id, run.note)
        else:
            run.outcome, run.job_id = "submitted", job.id
            plan, task_rows = claim_new_step(job.steps[0])
            rows = [*job_rows(job), *task_rows]
            detail = job_detail(job)
            if "secrets" in detail:  # which job used which secret, as every door says
                detail |= {"job": job.id, "tick": tick.isoformat()}
                rows.append(
                    audit_entry(
                        SYSTEM, "schedule.fire", row.name, detail=detail, project=row.project
                    )
                )
    # The job before its run (the run refers to it); a second firing of the tick
    # fails on the run's unique (schedule, tick), rolling the job back with it.
    insert_rows(session, [*rows, run])
    return Fired(row.name, tick, trigger, run.outcome, run.job_id, run.fired_at, plan)


def _unfinished_job(session: Session, schedule_id: str) -> str | None:
    return session.scalar(
        select(ScheduleRun.job_id)
        .join(Job, Job.id == ScheduleRun.job_id)
        .where(ScheduleRun.schedule_id == schedule_id, Job.status.in_(_UNFINISHED))
        .limit(1)
    )
