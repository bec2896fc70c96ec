"""What workers report as a job runs: tasks starting and ending, steps ending,
log lines; and moving the job on to its next step.

Every change is one atomic ``UPDATE ... WHERE state IN (...)`` (see
``models.TRANSITIONS``), so a duplicate delivery or a late report cannot move
a row backwards or count a task twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

from sqlalchemy import bindparam, case, insert, select, update

from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.service.dispatching import dispatch_step
from jobsys.specs import DEFAULT_PROJECT
from jobsys.states import JobStatus, TaskState, sources_of
from jobsys.store.models import Job, LogLine, Step, TaskRun, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskStart:
    """What a worker needs to run one task it has been cleared to run."""

    job_id: str
    step_id: str
    step_spec: dict[str, Any]
    #: How many deliveries of this task have started, this one included.
    attempt: int
    #: The worker of the delivery before this one, which died mid-run (None at first).
    previous_worker: str | None = None
    #: The job's project: whose secrets the step may name.
    project: str = DEFAULT_PROJECT


@dataclass(frozen=True)
class LogRecord:
    line: str
    stream: str = "stdout"
    ts: datetime | None = None


# The statements every task runs, built once. A statement object memoizes its
# cache key, and run on the session's connection (Core) it skips the ORM's
# bulk-update bookkeeping (synchronize_session evaluating the WHERE clause
# against the identity map, which holds nothing here): together most of the
# Python time a chunk spent in SQLAlchemy. Bound values are named b_* because
# SQLAlchemy reserves a column's own name in a SET clause.
_START_ROW = (
    select(
        Job.status.label("job_status"),
        Job.project,
        TaskRun.state,
        TaskRun.worker,
        TaskRun.attempt,
        TaskRun.job_id,
        TaskRun.step_id,
        Step.kind,
        Step.status.label("step_status"),
        Step.spec["function"].label("function"),
        Step.spec["secrets"].label("secrets"),
        Step.spec["memory_limit"].label("memory_limit"),
        Step.spec["network"].label("network"),
    )
    .select_from(TaskRun)
    .join(Job, Job.id == TaskRun.job_id)
    .join(Step, Step.id == TaskRun.step_id)
    .where(TaskRun.id == bindparam("b_task"))
    .with_for_update(of=Job)
)
_START_RUN = (
    update(TaskRun)
    .where(
        TaskRun.id == bindparam("b_task"),
        TaskRun.state.in_([TaskState.PENDING.value, TaskState.RUNNING.value]),
    )
    .values(
        state=TaskState.RUNNING.value,
        worker=bindparam("b_worker"),
        started_at=bindparam("b_now"),
        attempt=TaskRun.attempt + 1,
    )
)
_STEP_SPEC = select(Step.spec).where(Step.id == bindparam("b_step"))
_FINISH_ROW = (
    select(TaskRun.job_id, TaskRun.step_id)
    .join(Job, Job.id == TaskRun.job_id)
    .where(TaskRun.id == bindparam("b_task"))
    .with_for_update(of=Job)
)
_END_RUN = (
    update(TaskRun)
    .where(
        TaskRun.id == bindparam("b_task"),
        # A task whose job was cancelled while it ran still reports its
        # results and logs once; it keeps the state "cancelled".
        TaskRun.state.in_([TaskState.RUNNING.value, TaskState.CANCELLED.value]),
        TaskRun.finished_at.is_(None),
    )
    .values(
        state=case(
            (TaskRun.state == TaskState.CANCELLED.value, TaskState.CANCELLED.value),
            else_=bindparam("b_state"),
        ),
        error=bindparam("b_error", type_=TaskRun.error.type),
        results=bindparam("b_results", type_=TaskRun.results.type),
        failed_items=bindparam("b_failed"),
        finished_at=bindparam("b_now", type_=TaskRun.finished_at.type),
    )
)
_COUNT_DONE = (
    update(Step)
    .where(Step.id == bindparam("b_step"))
    .values(
        done_tasks=Step.done_tasks + 1,
        failed_items=Step.failed_items + bindparam("b_failed"),
    )
    .returning(Step.kind, Step.done_tasks, Step.total_tasks)
)
_INSERT_LOGS = insert(LogLine.__table__)
_STATUS_ROWS = (
    select(
        Job.status.label("job_status"),
        Job.error,
        Step.position,
        Step.status,
        Step.done_tasks,
        Step.total_tasks,
    )
    .select_from(Job)
    .outerjoin(Step, Step.job_id == Job.id)
    .where(Job.id == bindparam("b_job"))
    .order_by(Step.position)
)
_STEP_COUNTS = select(Step.failed_items, Step.total_items, Step.spec["tolerate_failures"]).where(
    Step.id == bindparam("b_step")
)
_STEP_RUNS = (
    select(TaskRun.chunk_index, TaskRun.state, TaskRun.error)
    .where(TaskRun.step_id == bindparam("b_step"))
    .order_by(TaskRun.item_start)
)
_NEXT_STEP = select(Step.id).where(
    Step.job_id == bindparam("b_job"),
    Step.position
    == select(Step.position).where(Step.id == bindparam("b_step")).scalar_subquery() + 1,
)
_LOCK_JOB = select(Job.id).where(Job.id == bindparam("b_job")).with_for_update()
#: (table, target status, columns set) -> its UPDATE; see _move.
_MOVES: dict[tuple[str, JobStatus, tuple[str, ...]], Any] = {}


def _core(session: Any) -> Any:
    """The session's connection, in its transaction: for the statements above."""
    return session.connection()


def start_task(ctx: Context, task_id: str, worker: str) -> TaskStart | None:
    """Mark a task running; None when it must not run (job over, task already done).

    A task found ``running`` was started by a delivery whose worker died: the
    caller holds the task's execution lease (``service.leases``), so no other
    run of it is alive, and this delivery takes over.

    One transaction of at most five statements: every chunk of a map pays it,
    so what can be read at once (the job's lock and status, the task's row, the
    step's status and function) is, and a step or job already running is not
    written again.
    """
    now = utcnow()
    with ctx.sessions.begin() as session:
        # A task of a job that ended (cancelled, or failed elsewhere) is dropped
        # untouched, whichever worker picks it up and however late. The job row
        # is locked first, as everywhere (see _lock_job_of).
        db = _core(session)
        row = db.execute(_START_ROW, {"b_task": task_id}).one_or_none()
        if row is None or JobStatus(row.job_status).finished:
            return None
        if row.state not in (TaskState.PENDING.value, TaskState.RUNNING.value):
            return None  # a duplicate delivery of a task that already ended
        moved = db.execute(
            _START_RUN, {"b_task": task_id, "b_worker": worker, "b_now": now}
        ).rowcount
        if not moved:
            return None
        step_began = row.step_status != JobStatus.RUNNING.value and _move(
            session, Step, row.step_id, JobStatus.RUNNING, started_at=now
        )
        if row.job_status != JobStatus.RUNNING.value:
            _move(session, Job, row.job_id, JobStatus.RUNNING, started_at=now)
        if row.kind == "function":
            # A chunk needs only the function: its items came in its message, and
            # reading (and parsing) the whole item list for each of a million-item
            # step's thousand chunks took most of the step's time.
            # And the names of its secrets (the worker fetches their values itself)
            # and what its sandbox may have.
            spec: dict[str, Any] = {
                "function": row.function,
                "secrets": row.secrets or [],
                "memory_limit": row.memory_limit,
                "network": bool(row.network),
            }
        else:
            spec = dict(db.scalar(_STEP_SPEC, {"b_step": row.step_id}))
        begun = TaskStart(
            job_id=row.job_id,
            step_id=row.step_id,
            step_spec=spec,
            attempt=row.attempt + 1,
            previous_worker=row.worker if row.state == TaskState.RUNNING.value else None,
            project=row.project,
        )
        # The start of one more chunk changes no status and no progress count.
        news = _status_of(session, row.job_id) if step_began else None
    if news is not None:
        _publish_status(ctx, news)
    return begun


def _lock_job_of(session: Any, task_id: str) -> str | None:
    """Lock the task's job row and return its status (None: no such task).

    Every transaction that writes a job's task, step and job rows takes the job
    row first, as cancel_job does, so that PostgreSQL never sees two of them
    take the same rows in opposite orders (a deadlock). SQLite has no row locks:
    its write transactions are serial already (BEGIN IMMEDIATE).
    """
    status: str | None = session.scalar(
        select(Job.status)
        .join(TaskRun, TaskRun.job_id == Job.id)
        .where(TaskRun.id == task_id)
        .with_for_update(of=Job)
    )
    return status


def _move(
    session: Any, model: type[Job] | type[Step], row_id: str, target: JobStatus, **values: Any
) -> bool:
    """Move one job or step row to ``target`` if its status allows (one cached
    statement per table, target and set of columns)."""
    key = (model.__tablename__, target, tuple(sorted(values)))
    stmt = _MOVES.get(key)
    if stmt is None:
        table = model.__table__
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.status.in_(sources_of(target)))
            .values(
                status=target.value,
                **{k: bindparam(f"b_{k}", type_=table.c[k].type) for k in key[2]},
            )
        )
        _MOVES[key] = stmt
    params = {f"b_{k}": v for k, v in values.items()}
    params["b_id"] = row_id
    return bool(_core(session).execute(stmt, params).rowcount)


def record_attempt(ctx: Context, step_id: str) -> None:
    with ctx.sessions.begin() as session:
        session.execute(update(Step).where(Step.id == step_id).values(attempts=Step.attempts + 1))


def finish_task(
    ctx: Context,
    task_id: str,
    *,
    ok: bool,
    error: str | None = None,
    results: list[Any] | None = None,
    failed_items: int = 0,
    logs: Sequence[LogRecord] = (),
    logs_published: bool = False,
    settle: bool = False,
) -> bool:
    """Record a task's end, its results and its logs in one transaction.

    Log lines are published as events too, unless the caller already streamed
    them live (``logs_published``).

    Counts the task towards its step's progress only if this call is the one
    that ended it; a second report of the same task changes nothing.

    The report that brings a function step's count of ended tasks to its total
    judges and ends the step in this same transaction (and the job with it when
    it was the last step): a one-call job ends in one transaction and one event,
    and a map's step ends with its last chunk instead of a Celery round later
    (its chord's callback then finds the step ended). The count only says when
    to look: the step ends only if every one of its tasks has ended.

    ``settle``: the task is its step's only one, sent without a chord callback;
    look even if the count says otherwise.
    """
    state = TaskState.COMPLETED if ok else TaskState.FAILED
    with ctx.sessions.begin() as session:
        db = _core(session)
        run = db.execute(_FINISH_ROW, {"b_task": task_id}).one_or_none()
        if run is None:
            return False
        ended = db.execute(
            _END_RUN,
            {
                "b_task": task_id,
                "b_state": state.value,
                "b_error": error,
                "b_results": results,
                "b_failed": failed_items,
                "b_now": utcnow(),
            },
        ).rowcount
        if not ended:
            return False
        counts = db.execute(_COUNT_DONE, {"b_step": run.step_id, "b_failed": failed_items}).one()
        _insert_logs(session, run.job_id, run.step_id, logs)
        last = counts.kind == "function" and counts.done_tasks >= counts.total_tasks
        end = _settle_function_step(session, run.job_id, run.step_id) if settle or last else None
        # A step's end is always told; one more chunk done, at most every
        # _PROGRESS_EVERY_S per job and process (readers get the whole picture
        # each time, and the step's end brings the final count).
        news = _status_of(session, run.job_id) if end or _progress_due(run.job_id) else None
    if not logs_published:
        publish_logs(ctx, run.job_id, run.step_id, logs)
    if news is not None:
        _publish_status(ctx, news)
    if end is not None:
        _after_step_end(ctx, end)
    return True


#: Least seconds between two progress events of one job from one process.
_PROGRESS_EVERY_S = 0.1
_last_progress: dict[str, float] = {}


def _progress_due(job_id: str) -> bool:
    """Whether a chunk's end should publish the job's progress now. A thousand
    chunks need not send a thousand events (each one a query and a Redis write
    in the worker, and a message to every follower)."""
    now = time.monotonic()
    last = _last_progress.get(job_id)
    if last is not None and now - last < _PROGRESS_EVERY_S:
        return False
    if len(_last_progress) > 1024:
        _last_progress.clear()
    _last_progress[job_id] = now
    return True


def publish_logs(ctx: Context, job_id: str, step_id: str | None, logs: Sequence[LogRecord]) -> None:
    """Send log lines to the job's live stream (they are stored separately)."""
    now = utcnow()
    ctx.events.publish_many(
        job_id,
        "log",
        [
            {
                "step_id": step_id,
                "stream": r.stream,
                "line": r.line,
                "ts": (r.ts or now).isoformat(),
            }
            for r in logs
        ],
    )


def announce(ctx: Context, job_id: str) -> None:
    """Publish the job's current status and progress as one "status" event.

    Readers get the whole picture each time, so a missed event costs nothing.
    """
    with ctx.sessions() as session:
        news = _status_of(session, job_id)
    if news is not None:
        _publish_status(ctx, news)


def _status_of(session: Any, job_id: str) -> dict[str, Any] | None:
    rows = _core(session).execute(_STATUS_ROWS, {"b_job": job_id}).all()
    if not rows:
        return None
    steps = [r for r in rows if r.position is not None]
    return {
        "job_id": job_id,
        "status": rows[0].job_status,
        "error": rows[0].error,
        "progress": {
            "done": sum(s.done_tasks for s in steps),
            "total": sum(s.total_tasks for s in steps),
        },
        "steps": [{"position": s.position, "status": s.status} for s in steps],
    }


def _publish_status(ctx: Context, news: dict[str, Any]) -> None:
    # A finished job's stream gets its shorter TTL in the event's own round trip.
    ctx.events.publish(news["job_id"], "status", news, final=JobStatus(news["status"]).finished)


def append_logs(ctx: Context, job_id: str, step_id: str | None, logs: Iterable[LogRecord]) -> None:
    with ctx.sessions.begin() as session:
        _insert_logs(session, job_id, step_id, logs)


def _insert_logs(session: Any, job_id: str, step_id: str | None, logs: Iterable[LogRecord]) -> None:
    now = utcnow()
    rows = [
        {
            "job_id": job_id,
            "step_id": step_id,
            "ts": r.ts or now,
            "stream": r.stream,
            "line": r.line,
        }
        for r in logs
    ]
    if rows:
        _core(session).execute(_INSERT_LOGS, rows)


#: Task states that will still change: the task has not reported.
_UNENDED = (TaskState.PENDING.value, TaskState.RUNNING.value)


@dataclass(frozen=True)
class _StepEnd:
    """What ending a step did, for the work that follows its commit."""

    job_id: str
    #: False when the step had ended already (a duplicate or a late report).
    moved: bool
    #: The step to publish next (the ended one completed and one follows it).
    next_id: str | None = None


def gather_function_step(ctx: Context, step_id: str) -> JobStatus:
    """The chord callback's work: judge the step from every chunk's record and
    end it (and its job, after the last step), in one transaction.

    It reads the chunks' states, not their results: a million items' results
    would fill the worker's memory to learn what the counters already say."""
    with ctx.sessions.begin() as session:
        job_id = session.scalar(select(Step.job_id).where(Step.id == step_id))
        _lock_job(session, job_id)
        ended = session.scalar(select(Step.status).where(Step.id == step_id))
        if JobStatus(ended).finished:
            # Its last chunk ended it (see finish_task): nothing to read through.
            return JobStatus(ended)
        status, error = _judge_function_step(session, step_id)
        end = _end_step(session, step_id, job_id, status, error=error)
        if not end.moved:
            return JobStatus(session.scalar(select(Step.status).where(Step.id == step_id)))
        news = _status_of(session, job_id)
    if news is not None:
        _publish_status(ctx, news)
    _after_step_end(ctx, end)
    return status


def _settle_function_step(session: Any, job_id: str, step_id: str) -> _StepEnd | None:
    """End the step in the caller's transaction (which holds its job's lock) if
    every one of its tasks has ended; None while one has still to report."""
    judged = _judge_function_step(session, step_id, wait_for_unended=True)
    if judged is None:
        return None
    status, error = judged
    return _end_step(session, step_id, job_id, status, error=error)


@overload
def _judge_function_step(
    session: Any, step_id: str, *, wait_for_unended: Literal[False] = False
) -> tuple[JobStatus, str | None]: ...


@overload
def _judge_function_step(
    session: Any, step_id: str, *, wait_for_unended: Literal[True]
) -> tuple[JobStatus, str | None] | None: ...


def _judge_function_step(
    session: Any, step_id: str, *, wait_for_unended: bool = False
) -> tuple[JobStatus, str | None] | None:
    """How the step ends, from its chunks' states and failure counts; with
    ``wait_for_unended``, None while a chunk has still to report (a chord's
    callback judges a chunk that never reported as broken)."""
    db = _core(session)
    failed_items, total_items, tolerate = db.execute(_STEP_COUNTS, {"b_step": step_id}).one()
    runs = db.execute(_STEP_RUNS, {"b_step": step_id}).all()
    if wait_for_unended and any(r.state in _UNENDED for r in runs):
        return None
    broken = [r for r in runs if r.state != TaskState.COMPLETED.value]
    if broken:
        first_broken = broken[0]
        error = (
            f"{len(broken)} of {len(runs)} chunks did not complete; chunk "
            f"{first_broken.chunk_index}: {first_broken.error or first_broken.state}"
        )
        return JobStatus.FAILED, error
    if failed_items and not tolerate:
        first = session.scalars(
            select(TaskRun)
            .where(TaskRun.step_id == step_id, TaskRun.failed_items > 0)
            .order_by(TaskRun.item_start)
            .limit(1)
        ).first()
        first_error = _first_item_error(first) if first else "unknown"
        error = f"{failed_items} of {total_items} items failed (first: {first_error})"
        return JobStatus.FAILED, error
    return JobStatus.COMPLETED, None


def _first_item_error(run: TaskRun) -> str:
    for i, outcome in enumerate(run.results or []):
        if not outcome["ok"]:
            err = outcome["error"]
            return f"item {run.item_start + i}: {err['type']}: {err['message']}"
    return "unknown"


def _lock_job(session: Any, job_id: str) -> None:
    """Take the job row's lock first, as every writer of its rows does (see _lock_job_of)."""
    _core(session).execute(_LOCK_JOB, {"b_job": job_id})


def _end_step(
    session: Any,
    step_id: str,
    job_id: str,
    status: JobStatus,
    *,
    error: str | None = None,
    exit_code: int | None = None,
) -> _StepEnd:
    """End the step in the caller's transaction (holding the job's lock); when no
    step follows, or this one did not complete, end the job in it too."""
    now = utcnow()
    moved = _move(session, Step, step_id, status, error=error, exit_code=exit_code, finished_at=now)
    if not moved:
        return _StepEnd(job_id=job_id, moved=False)
    next_id = None
    if status is JobStatus.COMPLETED:
        next_id = _core(session).scalar(_NEXT_STEP, {"b_job": job_id, "b_step": step_id})
    if next_id is None:
        job_error = None
        if status is not JobStatus.COMPLETED:
            number = session.scalar(select(Step.position).where(Step.id == step_id)) + 1
            job_error = f"step {number} {status.value}: {error}"
        _move(session, Job, job_id, status, error=job_error, finished_at=now)
    return _StepEnd(job_id=job_id, moved=True, next_id=next_id)


def _after_step_end(ctx: Context, end: _StepEnd) -> None:
    """After the commit: publish the next step, and say so."""
    if end.next_id is None:
        return
    try:
        dispatch_step(ctx, end.next_id)
    except DispatchError as exc:
        log.warning("step %s waits in the outbox: %s", end.next_id, exc)
    announce(ctx, end.job_id)


def complete_step(
    ctx: Context,
    step_id: str,
    status: JobStatus,
    *,
    error: str | None = None,
    exit_code: int | None = None,
) -> JobStatus:
    """End a step and move its job on: publish the next step, or end the job
    (in the step's own transaction)."""
    with ctx.sessions.begin() as session:
        job_id = session.scalar(select(Step.job_id).where(Step.id == step_id))
        _lock_job(session, job_id)
        end = _end_step(session, step_id, job_id, status, error=error, exit_code=exit_code)
        if not end.moved:
            return JobStatus(session.scalar(select(Step.status).where(Step.id == step_id)))
        news = _status_of(session, job_id)
    if news is not None:
        _publish_status(ctx, news)
    _after_step_end(ctx, end)
    return status


def finish_job(ctx: Context, job_id: str, status: JobStatus, *, error: str | None = None) -> bool:
    with ctx.sessions.begin() as session:
        moved = _move(session, Job, job_id, status, error=error, finished_at=utcnow())
    if moved:
        announce(ctx, job_id)
    return moved
