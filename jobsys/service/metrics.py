"""What ``GET /metrics`` reports, read from the database (and the broker) at
scrape time, so every web process answers the same and nothing is lost when
one restarts: jobs by status, steps and tasks by outcome, task durations as a
cumulative histogram, queue lengths, live workers, and schedule lag."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, extract, func, select
from sqlalchemy.orm import Session

from jobsys.auth import Principal, Right, require_somewhere
from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.service.scope import all_if_every, in_projects
from jobsys.service.workers import list_workers
from jobsys.store.models import Job, Schedule, ScheduleRun, Step, TaskRun, utcnow

#: Upper bounds of the task-duration histogram, in seconds.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class Durations:
    """Finished tasks of one step kind: count, total seconds, cumulative bucket counts."""

    count: int
    total_s: float
    buckets: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    #: (project, status) -> jobs; steps, tasks and durations are summed over the projects.
    jobs: dict[tuple[str, str], int]
    steps: dict[tuple[str, str], int]
    tasks: dict[tuple[str, str], int]
    durations: dict[str, Durations]
    queues: dict[str, int] | None
    workers: int | None
    #: Per enabled schedule, (project, name): how far its next tick is overdue
    #: (0 when beat keeps up).
    schedule_lag_s: dict[tuple[str, str], float]
    #: Per schedule, (project, name): how late its last scheduled run was made after its tick.
    schedule_lateness_s: dict[tuple[str, str], float]


def metrics_snapshot(ctx: Context, principal: Principal) -> Snapshot:
    """Counts of the caller's projects' jobs, steps, tasks and schedules (every
    project's for a global role); queue lengths and workers are shared by all."""
    visible = require_somewhere(principal, Right.VIEW)
    now = utcnow()
    with ctx.sessions() as session:
        # A member who sees every project that exists needs no filter (nor the joins).
        visible = all_if_every(session, visible)

        def scoped(query: Any, job_id: Any = None) -> Any:
            if visible is not None and job_id is not None:
                query = query.join(Job, Job.id == job_id)
            return in_projects(query, Job.project, visible)

        by = (Job.project, Job.status)
        jobs = {
            (project, status): n
            for project, status, n in session.execute(
                scoped(select(*by, func.count()).group_by(*by))
            )
        }
        steps = {
            (kind, status): n
            for kind, status, n in session.execute(
                scoped(
                    select(Step.kind, Step.status, func.count()).group_by(Step.kind, Step.status),
                    Step.job_id,
                )
            )
        }
        tasks = {
            (kind, state): n
            for kind, state, n in session.execute(
                scoped(
                    select(Step.kind, TaskRun.state, func.count())
                    .join(Step, Step.id == TaskRun.step_id)
                    .group_by(Step.kind, TaskRun.state),
                    TaskRun.job_id,
                )
            )
        }
        durations = _durations(session, lambda q: scoped(q, TaskRun.job_id))
        lag, lateness = _schedules(session, now, visible)
    queues: dict[str, int] | None
    workers: int | None
    try:
        queues = ctx.dispatcher.queue_lengths()
        workers = sum(1 for w in list_workers(ctx, principal) if w.state == "online")
    except DispatchError:
        queues, workers = None, None
    return Snapshot(jobs, steps, tasks, durations, queues, workers, lag, lateness)


def _seconds(session: Session, later: Any, earlier: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return extract("epoch", later - earlier)


def _durations(session: Session, scoped: Callable[[Any], Any]) -> dict[str, Durations]:
    took = _seconds(session, TaskRun.finished_at, TaskRun.started_at)
    columns = [func.count(), func.coalesce(func.sum(took), 0.0)]
    columns += [func.sum(case((took <= bound, 1), else_=0)) for bound in BUCKETS]
    rows = session.execute(
        scoped(
            select(Step.kind, *columns)
            .select_from(TaskRun)
            .join(Step, Step.id == TaskRun.step_id)
            .where(TaskRun.started_at.is_not(None), TaskRun.finished_at.is_not(None))
            .group_by(Step.kind)
        )
    )
    return {
        kind: Durations(int(count), float(total), tuple(int(b or 0) for b in buckets))
        for kind, count, total, *buckets in rows
    }


def _schedules(
    session: Session, now: datetime, visible: frozenset[str] | None
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    def scoped(query: Any) -> Any:
        return in_projects(query, Schedule.project, visible)

    named = (Schedule.project, Schedule.name)
    lag = {
        (project, name): max(0.0, (now - due).total_seconds())
        for project, name, due in session.execute(
            scoped(select(*named, Schedule.next_fire_at).where(Schedule.enabled.is_(True)))
        )
        if due is not None
    }
    latest = (
        select(ScheduleRun.schedule_id, func.max(ScheduleRun.tick).label("tick"))
        .where(ScheduleRun.trigger == "schedule")
        .group_by(ScheduleRun.schedule_id)
        .subquery()
    )
    lateness = {
        (project, name): max(0.0, (fired - tick).total_seconds())
        for project, name, fired, tick in session.execute(
            scoped(
                select(*named, ScheduleRun.fired_at, ScheduleRun.tick)
                .join(latest, latest.c.schedule_id == Schedule.id)
                .join(
                    ScheduleRun,
                    (ScheduleRun.schedule_id == latest.c.schedule_id)
                    & (ScheduleRun.tick == latest.c.tick),
                )
            )
        )
    }
    return lag, lateness
