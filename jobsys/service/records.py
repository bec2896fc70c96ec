"""What service functions hand back: plain frozen values, never ORM objects.

Each has ``to_dict()`` giving the JSON the API sends, so HTML views, the API
and the CLI all show the same fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobsys.specs import DEFAULT_PROJECT
from jobsys.store.models import LogLine, Schedule, ScheduleRun, TaskRun


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


@dataclass(frozen=True)
class StepInfo:
    id: str
    position: int
    kind: str
    name: str
    status: str
    total_tasks: int
    done_tasks: int
    total_items: int
    failed_items: int
    attempts: int
    exit_code: int | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    summary: str

    @classmethod
    def of(cls, step: Any) -> StepInfo:
        spec = step.spec
        if step.kind == "docker":
            summary = f"{spec['image']} {' '.join(spec['command'])}"
        else:
            fn = spec["function"]
            summary = (
                f"{fn if isinstance(fn, str) else 'pickled function'} over {step.total_items} items"
            )
        return cls(
            id=step.id,
            position=step.position,
            kind=step.kind,
            name=spec.get("name") or f"step {step.position + 1}",
            status=step.status,
            total_tasks=step.total_tasks,
            done_tasks=step.done_tasks,
            total_items=step.total_items,
            failed_items=step.failed_items,
            attempts=step.attempts,
            exit_code=step.exit_code,
            error=step.error,
            started_at=step.started_at,
            finished_at=step.finished_at,
            summary=summary,
        )

    @property
    def duration_s(self) -> float | None:
        return _seconds(self.started_at, self.finished_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": self.position,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "progress": {"done": self.done_tasks, "total": self.total_tasks},
            "items": {"total": self.total_items, "failed": self.failed_items},
            "attempts": self.attempts,
            "exit_code": self.exit_code,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration_s,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    status: str
    owner: str
    spec: dict[str, Any]
    error: str | None
    rerun_of: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[StepInfo, ...]
    template: str | None = None
    variables: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    #: Who supplied the job's code (kept through reruns): results unpickle for them.
    code_owner: str | None = None
    #: True when an idempotent repeat got back the job its first request made
    #: (the API says so in a header, not in the job's JSON).
    replayed: bool = False
    project: str = DEFAULT_PROJECT
    #: Why it may not start yet (``{"reason", "detail", "position"}``); None: nothing holds it.
    waiting: dict[str, Any] | None = None
    not_before: datetime | None = None

    @classmethod
    def of(cls, job: Any, steps: Any = None) -> JobInfo:
        """From a Job (ORM) with its steps, or from rows of their columns
        (``job`` and ``steps`` from ``read_job_infos``)."""
        steps = job.steps if steps is None else steps
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            owner=job.owner,
            spec=job.spec,
            error=job.error,
            rerun_of=job.rerun_of,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            steps=tuple(StepInfo.of(s) for s in steps),
            template=job.template,
            variables=job.variables,
            tags=tuple(job.spec.get("tags", ())),
            code_owner=job.code_owner,
            project=job.project,
            waiting=job.waiting,
            not_before=job.not_before,
        )

    @property
    def done_tasks(self) -> int:
        return sum(s.done_tasks for s in self.steps)

    @property
    def total_tasks(self) -> int:
        return sum(s.total_tasks for s in self.steps)

    def eta_s(self, now: datetime | None = None) -> float | None:
        """Seconds left at the pace so far (tasks done per second since the start);
        None until the job runs and has finished a task, and once it has ended."""
        done, total = self.done_tasks, self.total_tasks
        if self.status != "running" or not self.started_at or not 0 < done < total:
            return None
        elapsed = ((now or datetime.now(UTC)) - self.started_at).total_seconds()
        return max(0.0, elapsed / done * (total - done))

    def to_dict(self, *, with_spec: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "status": self.status,
            "waiting": self.waiting,
            "not_before": _iso(self.not_before),
            "owner": self.owner,
            "code_owner": self.code_owner,
            "error": self.error,
            "rerun_of": self.rerun_of,
            "template": self.template,
            "variables": self.variables,
            "tags": list(self.tags),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "progress": {"done": self.done_tasks, "total": self.total_tasks, "eta_s": self.eta_s()},
            "steps": [s.to_dict() for s in self.steps],
        }
        if with_spec:
            data["spec"] = self.spec
        return data


@dataclass(frozen=True)
class TaskInfo:
    id: str
    step_id: str
    chunk_index: int
    item_start: int
    item_stop: int
    state: str
    worker: str | None
    attempt: int
    failed_items: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, run: TaskRun) -> TaskInfo:
        return cls(
            id=run.id,
            step_id=run.step_id,
            chunk_index=run.chunk_index,
            item_start=run.item_start,
            item_stop=run.item_stop,
            state=run.state,
            worker=run.worker,
            attempt=run.attempt,
            failed_items=run.failed_items,
            error=run.error,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )

    @property
    def duration_s(self) -> float | None:
        return _seconds(self.started_at, self.finished_at)

    def to_dict(self) -> dict[str, Any]:
        duration = self.duration_s
        return {
            "id": self.id,
            "step_id": self.step_id,
            "chunk": self.chunk_index,
            "items": [self.item_start, self.item_stop],
            "state": self.state,
            "worker": self.worker,
            "attempt": self.attempt,
            "failed_items": self.failed_items,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": duration,
        }


@dataclass(frozen=True)
class LogEntry:
    id: int
    step_id: str | None
    ts: datetime
    stream: str
    line: str

    @classmethod
    def of(cls, row: LogLine) -> LogEntry:
        return cls(row.id, row.step_id, row.ts, row.stream, row.line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step_id": self.step_id,
            "ts": _iso(self.ts),
            "stream": self.stream,
            "line": self.line,
        }


@dataclass(frozen=True)
class ResultStream:
    """Every outcome of a job's function step, read page by page as it is iterated:
    for a download that must not hold a million results in memory. The rights and
    the job's state are checked when it is made, so a refusal is an answer, not a
    broken stream."""

    head: dict[str, Any]
    pages: Iterator[list[dict[str, Any]]]


@dataclass(frozen=True)
class Page:
    items: tuple[JobInfo, ...]
    total: int
    page: int
    per_page: int
    #: False when more than ``total`` jobs match (the count stopped there:
    #: ``jobsys.service.job_list.COUNT_CAP``); ``pages`` then counts one page more.
    total_exact: bool = True

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page)) + (0 if self.total_exact else 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": [j.to_dict(with_spec=False) for j in self.items],
            "total": self.total,
            "total_exact": self.total_exact,
            "page": self.page,
            "per_page": self.per_page,
            "pages": self.pages,
        }


@dataclass(frozen=True)
class ScheduleRunInfo:
    id: int
    schedule_id: str
    tick: datetime
    trigger: str
    outcome: str
    job_id: str | None
    job_status: str | None
    note: str | None
    fired_at: datetime

    @classmethod
    def of(cls, run: ScheduleRun, job_status: str | None = None) -> ScheduleRunInfo:
        return cls(
            id=run.id,
            schedule_id=run.schedule_id,
            tick=run.tick,
            trigger=run.trigger,
            outcome=run.outcome,
            job_id=run.job_id,
            job_status=job_status,
            note=run.note,
            fired_at=run.fired_at,
        )

    @property
    def lateness_s(self) -> float:
        """How long after its tick the run was made (0 for a manual run)."""
        return max(0.0, (self.fired_at - self.tick).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "schedule_id": self.schedule_id,
            "tick": _iso(self.tick),
            "trigger": self.trigger,
            "outcome": self.outcome,
            "job_id": self.job_id,
            "job_status": self.job_status,
            "note": self.note,
            "fired_at": _iso(self.fired_at),
            "lateness_s": round(self.lateness_s, 3),
        }


@dataclass(frozen=True)
class ScheduleInfo:
    id: str
    name: str
    description: str
    cron: str | None
    interval_s: int | None
    timezone: str
    #: The job spec as shown to readers (pickled values summarised), or None
    #: when the schedule starts a catalog template with ``variables``.
    spec: dict[str, Any] | None
    template: str | None
    variables: dict[str, Any] | None
    catch_up: str
    catch_up_window_s: int
    overlap: str
    enabled: bool
    owner: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_run: ScheduleRunInfo | None
    created_at: datetime
    updated_at: datetime
    project: str = DEFAULT_PROJECT

    @classmethod
    def of(
        cls, row: Schedule, public_spec: dict[str, Any] | None, last_run: ScheduleRunInfo | None
    ) -> ScheduleInfo:
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            cron=row.cron,
            interval_s=row.interval_s,
            timezone=row.timezone,
            spec=public_spec,
            template=row.template,
            variables=row.variables,
            catch_up=row.catch_up,
            catch_up_window_s=row.catch_up_window_s,
            overlap=row.overlap,
            enabled=row.enabled,
            owner=row.owner,
            next_fire_at=row.next_fire_at,
            last_fire_at=row.last_fire_at,
            last_run=last_run,
            created_at=row.created_at,
            updated_at=row.updated_at,
            project=row.project,
        )

    @property
    def timing(self) -> str:
        """The timing in words, as the schedule list shows it."""
        if self.interval_s is not None:
            return f"every {self.interval_s} s"
        return f"{self.cron} ({self.timezone})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "description": self.description,
            "cron": self.cron,
            "interval_s": self.interval_s,
            "timezone": self.timezone,
            "timing": self.timing,
            "spec": self.spec,
            "template": self.template,
            "variables": self.variables,
            "catch_up": self.catch_up,
            "catch_up_window_s": self.catch_up_window_s,
            "overlap": self.overlap,
            "enabled": self.enabled,
            "owner": self.owner,
            "next_fire_at": _iso(self.next_fire_at),
            "last_fire_at": _iso(self.last_fire_at),
            "last_run": self.last_run.to_dict() if self.last_run else None,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }
