"""Ending what a lost worker left unended: a task that will never report, a
step whose chord callback never came, a job stopped between two steps.

Celery cannot be relied on for the last word: a chord whose header task
failed, was revoked or was lost never calls its callback (celery/celery#4207,
#3317), and a Redis restarted empty forgets its chord counters. Every step
can therefore be ended from the database's records alone, by the worker that
gives up on a task or by the lost-task sweep (``service.sweep_lost_tasks``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from jobsys.context import Context
from jobsys.service.progress import (
    LogRecord,
    _insert_logs,
    _lock_job_of,
    _publish_status,
    _status_of,
    complete_step,
    finish_job,
    gather_function_step,
    publish_logs,
)
from jobsys.states import JobStatus, TaskState
from jobsys.store.models import Job, Step, TaskRun, utcnow

UNENDED = (TaskState.PENDING.value, TaskState.RUNNING.value)

#: The error type recorded for each item of a chunk that never reported.
TASK_LOST = "TaskLost"


def abandon_task(
    ctx: Context, task_id: str, reason: str, *, outcome: dict[str, Any] | None = None
) -> bool:
    """Record as failed a task that will never report for itself: lost with its
    worker and not redelivered, or given up after its worker died on every
    delivery. Each item of a chunk gets ``reason`` as its error, so results
    show which items have no value and why.

    ``outcome`` is the item outcome to record instead (e.g. the exception a
    chunk raised, with its traceback). False when the task had already ended
    (its own report came first). Ending the step is the caller's: see
    ``settle_step``.
    """
    lost = outcome or {
        "ok": False,
        "error": {"type": TASK_LOST, "message": reason, "traceback": ""},
    }
    note = LogRecord(line=f"[jobsys] task {task_id}: {reason}", stream="system")
    with ctx.sessions.begin() as session:
        _lock_job_of(session, task_id)
        run = session.execute(
            select(
                TaskRun.job_id, TaskRun.step_id, TaskRun.item_start, TaskRun.item_stop, Step.kind
            )
            .join(Step, Step.id == TaskRun.step_id)
            .where(TaskRun.id == task_id)
        ).one_or_none()
        if run is None:
            return False
        items = run.item_stop - run.item_start if run.kind == "function" else 0
        ended = session.execute(
            update(TaskRun)
            .where(
                TaskRun.id == task_id,
                TaskRun.state.in_([TaskState.PENDING.value, TaskState.RUNNING.value]),
                TaskRun.finished_at.is_(None),
            )
            .values(
                state=TaskState.FAILED.value,
                error=reason,
                results=[lost] * items if items else None,
                failed_items=items,
                finished_at=utcnow(),
            )
        ).rowcount
        if not ended:
            return False
        session.execute(
            update(Step)
            .where(Step.id == run.step_id)
            .values(done_tasks=Step.done_tasks + 1, failed_items=Step.failed_items + items)
        )
        _insert_logs(session, run.job_id, run.step_id, [note])
        news = _status_of(session, run.job_id)
    publish_logs(ctx, run.job_id, run.step_id, [note])
    if news is not None:
        _publish_status(ctx, news)
    return True


def step_of_task(ctx: Context, task_id: str) -> str | None:
    """The step a task belongs to (None for a task jobsys does not know)."""
    with ctx.sessions() as session:
        return session.scalar(select(TaskRun.step_id).where(TaskRun.id == task_id))


def settle_step(ctx: Context, step_id: str) -> JobStatus | None:
    """End a step whose tasks have all ended, from their records: what its chord
    callback or its Docker task would have done had it not been lost. None while
    a task of it has still to end; the step's status if it had ended already."""
    with ctx.sessions() as session:
        kind, status = session.execute(
            select(Step.kind, Step.status).where(Step.id == step_id)
        ).one()
        if JobStatus(status).finished:
            return JobStatus(status)
        runs = session.execute(
            select(TaskRun.state, TaskRun.error).where(TaskRun.step_id == step_id)
        ).all()
    if not runs or any(r.state in UNENDED for r in runs):
        return None
    if kind == "function":
        return gather_function_step(ctx, step_id)
    run = runs[0]
    if run.state == TaskState.COMPLETED.value:
        # A Docker task completes only when its container exited 0.
        return complete_step(ctx, step_id, JobStatus.COMPLETED, exit_code=0)
    return complete_step(ctx, step_id, JobStatus.FAILED, error=run.error or f"task {run.state}")


def settle_job(ctx: Context, job_id: str) -> JobStatus | None:
    """End a running job whose steps ended without the job following: its first
    step that did not complete decides, as ``complete_step`` would have. None
    while a step is still to run (an unpublished one is the outbox sweep's)."""
    with ctx.sessions() as session:
        steps = session.execute(
            select(Step.position, Step.status, Step.error)
            .where(Step.job_id == job_id)
            .order_by(Step.position)
        ).all()
    for step in steps:
        status = JobStatus(step.status)
        if status is JobStatus.COMPLETED:
            continue
        if not status.finished:
            return None
        finish_job(
            ctx, job_id, status, error=f"step {step.position + 1} {status.value}: {step.error}"
        )
        return status
    finish_job(ctx, job_id, JobStatus.COMPLETED)
    return JobStatus.COMPLETED


def stalled_steps(ctx: Context, ended_before: datetime) -> list[str]:
    """Running steps whose every task ended before ``ended_before``: their
    callback (or their Docker task's last report) should have come by then."""
    with ctx.sessions() as session:
        unended = (
            select(TaskRun.id)
            .where(TaskRun.step_id == Step.id, TaskRun.state.in_(UNENDED))
            .exists()
        )
        late = (
            select(TaskRun.id)
            .where(TaskRun.step_id == Step.id, TaskRun.finished_at >= ended_before)
            .exists()
        )
        return list(
            session.scalars(
                select(Step.id).where(
                    Step.status == JobStatus.RUNNING.value,
                    Step.dispatched_at.is_not(None),
                    ~unended,
                    ~late,
                )
            )
        )


def stalled_jobs(ctx: Context, ended_before: datetime) -> list[str]:
    """Running jobs with no step running and none ended since ``ended_before``."""
    with ctx.sessions() as session:
        busy = (
            select(Step.id)
            .where(
                Step.job_id == Job.id,
                (Step.status == JobStatus.RUNNING.value) | (Step.finished_at >= ended_before),
            )
            .exists()
        )
        return list(
            session.scalars(select(Job.id).where(Job.status == JobStatus.RUNNING.value, ~busy))
        )
