"""The dashboard's figures: jobs by status, jobs per hour and the failure rate
over the last day, how busy each queue is, live workers and recent failures.

Every figure is one grouped, indexed query (or one Redis call), so the page
costs the same with a hundred jobs or a hundred thousand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from jobsys.auth import Principal, Right, require_somewhere
from jobsys.broker.canvas import QUEUE_OF_KIND, QUEUES
from jobsys.broker.dispatch import WorkerInfo
from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.service.records import JobInfo
from jobsys.service.scope import all_if_every, in_projects
from jobsys.service.workers import list_workers
from jobsys.states import JobStatus, TaskState
from jobsys.store.models import Job, Step, TaskRun, utcnow

HOURS = 24
RECENT_FAILURES = 10


@dataclass(frozen=True)
class Hour:
    """One hour of the last day: jobs submitted in it, and jobs that ended in it."""

    start: datetime
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def ended(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def failure_rate(self) -> float | None:
        """Failed among the jobs that ended this hour; None when none ended."""
        return self.failed / self.ended if self.ended else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "submitted": self.submitted,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "failure_rate": self.failure_rate,
        }


@dataclass(frozen=True)
class QueueLoad:
    """A queue (one per step kind): waiting in the broker, running, and the last hour's work."""

    name: str
    waiting: int | None
    running: int
    done_last_hour: int
    failed_last_hour: int

    @property
    def busy(self) -> int:
        return (self.waiting or 0) + self.running

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "waiting": self.waiting,
            "running": self.running,
            "done_last_hour": self.done_last_hour,
            "failed_last_hour": self.failed_last_hour,
        }


@dataclass(frozen=True)
class Dashboard:
    at: datetime
    counts: dict[str, int]
    hours: tuple[Hour, ...]
    #: Busiest first.
    queues: tuple[QueueLoad, ...]
    workers: tuple[WorkerInfo, ...]
    #: Why queue lengths or workers are missing (the broker is unreachable), else None.
    broker_problem: str | None
    recent_failures: tuple[JobInfo, ...]

    @property
    def submitted_last_day(self) -> int:
        return sum(h.submitted for h in self.hours)

    @property
    def failure_rate_last_day(self) -> float | None:
        ended = sum(h.ended for h in self.hours)
        return sum(h.failed for h in self.hours) / ended if ended else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "jobs": self.counts,
            "last_24h": {
                "submitted": self.submitted_last_day,
                "failure_rate": self.failure_rate_last_day,
                "hours": [h.to_dict() for h in self.hours],
            },
            "queues": [q.to_dict() for q in self.queues],
            "workers": [w.to_dict() for w in self.workers],
            "broker_problem": self.broker_problem,
            "recent_failures": [j.to_dict(with_spec=False) for j in self.recent_failures],
        }


def dashboard(ctx: Context, principal: Principal, now: datetime | None = None) -> Dashboard:
    """The caller's projects' jobs (counts, hours, recent failures), and the load
    of the queues and workers, which every project shares."""
    visible = require_somewhere(principal, Right.VIEW)
    now = now or utcnow()
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)

    with ctx.sessions() as session:
        every = all_if_every(session, visible)

        def scoped(query: Any) -> Any:
            return in_projects(query, Job.project, every)

        counts = dict(
            session.execute(scoped(select(Job.status, func.count()).group_by(Job.status))).all()
        )
        hours = _hours(session, first, scoped)
        running, last_hour = _task_load(session, now - timedelta(hours=1))
        failures = session.scalars(
            scoped(select(Job))
            .where(Job.status == JobStatus.FAILED.value)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(RECENT_FAILURES)
            .options(selectinload(Job.steps))
        )
        recent = tuple(JobInfo.of(j) for j in failures)
    problem = None
    try:
        waiting: dict[str, int] = ctx.dispatcher.queue_lengths()
        workers = tuple(w for w in list_workers(ctx, principal) if w.state == "online")
    except DispatchError as exc:
        waiting, workers, problem = {}, (), exc.message
    queues = [
        QueueLoad(
            name=q,
            waiting=waiting.get(q) if problem is None else None,
            running=running.get(q, 0),
            done_last_hour=last_hour.get((q, TaskState.COMPLETED.value), 0),
            failed_last_hour=last_hour.get((q, TaskState.FAILED.value), 0),
        )
        for q in QUEUES
    ]
    queues.sort(key=lambda q: (-q.busy, -q.done_last_hour, q.name))
    return Dashboard(
        at=now,
        counts={s.value: counts.get(s.value, 0) for s in JobStatus},
        hours=_fill(hours, first),
        queues=tuple(queues),
        workers=workers,
        broker_problem=problem,
        recent_failures=recent,
    )


def _hour_of(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%dT%H:00:00", column)
    return func.date_trunc("hour", column)


def _as_hour(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hours(
    session: Session, first: datetime, scoped: Callable[[Any], Any]
) -> dict[datetime, dict[str, int]]:
    """Per hour: ``submitted`` (by created_at) and each end status (by finished_at),
    of the jobs ``scoped`` keeps."""
    found: dict[datetime, dict[str, int]] = {}
    created = _hour_of(session, Job.created_at)
    for hour, n in session.execute(
        scoped(select(created, func.count()).where(Job.created_at >= first).group_by(created))
    ):
        found.setdefault(_as_hour(hour), {})["submitted"] = n
    ended = _hour_of(session, Job.finished_at)
    for hour, status, n in session.execute(
        scoped(
            select(ended, Job.status, func.count())
            .where(Job.finished_at >= first)
            .group_by(ended, Job.status)
        )
    ):
        found.setdefault(_as_hour(hour), {})[status] = n
    return found


def _fill(found: dict[datetime, dict[str, int]], first: datetime) -> tuple[Hour, ...]:
    hours = []
    for i in range(HOURS):
        start = first + timedelta(hours=i)
        counts = found.get(start, {})
        hours.append(
            Hour(
                start=start,
                submitted=counts.get("submitted", 0),
                completed=counts.get(JobStatus.COMPLETED.value, 0),
                failed=counts.get(JobStatus.FAILED.value, 0),
                cancelled=counts.get(JobStatus.CANCELLED.value, 0),
            )
        )
    return tuple(hours)


def _task_load(
    session: Session, since: datetime
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Tasks running now per queue, and tasks ended since ``since`` per queue and state."""
    queue = Step.kind  # each step kind has its own queue (QUEUE_OF_KIND)
    running = dict(
        session.execute(
            select(queue, func.count())
            .select_from(TaskRun)
            .join(Step, Step.id == TaskRun.step_id)
            .where(TaskRun.state == TaskState.RUNNING.value)
            .group_by(queue)
        ).all()
    )
    ended = {
        (QUEUE_OF_KIND[kind], state): n
        for kind, state, n in session.execute(
            select(queue, TaskRun.state, func.count())
            .select_from(TaskRun)
            .join(Step, Step.id == TaskRun.step_id)
            .where(TaskRun.finished_at >= since)
            .group_by(queue, TaskRun.state)
        )
    }
    return {QUEUE_OF_KIND[k]: n for k, n in running.items()}, ended
