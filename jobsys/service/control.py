"""Cancelling jobs, and what workers ask to learn that a job was cancelled.

The database is the record (the job row moves to ``cancelled`` in one atomic
UPDATE, so a job that just finished cannot be cancelled after the fact); the
broker gets a mirror flag for workers to poll cheaply, and Celery revokes for
function chunks, whose worker processes are ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from jobsys.auth import SYSTEM, Principal, Right, require, require_somewhere
from jobsys.context import Context
from jobsys.errors import DispatchError, NotFoundError, PermissionDenied, SpecError, StateError
from jobsys.service.audit import record
from jobsys.service.catalog import require_job_action
from jobsys.service.jobs import get_job, visible_job
from jobsys.service.progress import announce
from jobsys.service.records import JobInfo
from jobsys.states import FINISHED, JobStatus, TaskState, sources_of
from jobsys.store.models import Job, Step, TaskRun, utcnow

log = logging.getLogger(__name__)


def cancel_job(
    ctx: Context, principal: Principal, job_id: str, *, reason: str | None = None
) -> JobInfo:
    """Cancel a queued or running job; StateError (409) for one that already ended.

    ``reason`` becomes the job's error (default: who cancelled it).
    """
    require_somewhere(principal, Right.CANCEL)
    now = utcnow()
    live = sources_of(JobStatus.CANCELLED)
    with ctx.sessions.begin() as session:
        job = session.get(Job, job_id)
        project = visible_job(principal, job_id, job.project if job is not None else None)
        require(principal, Right.CANCEL, project)
        require_job_action(session, principal, job, "stop")
        moved = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(live))
            .values(
                status=JobStatus.CANCELLED.value,
                finished_at=now,
                error=reason or f"cancelled by {principal.name}",
                waiting=None,  # an ended job waits for nothing
            )
        ).rowcount
        if not moved:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
            if status is None:
                raise NotFoundError(f"no job with id {job_id!r}")
            raise StateError(
                f"job {job_id} is {status}; only queued or running jobs can be "
                "cancelled (rerun it instead)"
            )
        session.execute(
            update(Step)
            .where(Step.job_id == job_id, Step.status.in_(live))
            .values(status=JobStatus.CANCELLED.value, finished_at=now)
        )
        chunk_ids = list(
            session.scalars(
                select(TaskRun.id)
                .join(Step, Step.id == TaskRun.step_id)
                .where(
                    TaskRun.job_id == job_id,
                    Step.kind == "function",
                    TaskRun.state.in_([TaskState.PENDING.value, TaskState.RUNNING.value]),
                )
            )
        )
        # Pending tasks will never run. Running ones are marked too, but left
        # unfinished so their own last report (results, logs) still lands.
        session.execute(
            update(TaskRun)
            .where(TaskRun.job_id == job_id, TaskRun.state == TaskState.PENDING.value)
            .values(state=TaskState.CANCELLED.value, finished_at=now)
        )
        session.execute(
            update(TaskRun)
            .where(TaskRun.job_id == job_id, TaskRun.state == TaskState.RUNNING.value)
            .values(state=TaskState.CANCELLED.value)
        )
    try:
        ctx.dispatcher.cancel(job_id, chunk_ids)
    except DispatchError as exc:
        # Still cancelled: workers also read the database before and while they run.
        log.warning("cancel of %s not mirrored to the broker: %s", job_id, exc)
    announce(ctx, job_id)
    detail = {"reason": reason} if reason else None
    record(ctx, principal, "job.cancel", job_id, detail=detail, project=project)
    return get_job(ctx, principal, job_id)


@dataclass(frozen=True)
class Cancelled:
    """What a bulk cancel did to each job."""

    cancelled: tuple[str, ...]
    skipped: dict[str, str]

    @property
    def summary(self) -> str:
        text = f"cancelled {len(self.cancelled)} job(s)"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped (" + "; ".join(self.skipped.values()) + ")"
        return text


def cancel_jobs(ctx: Context, principal: Principal, job_ids: list[str]) -> Cancelled:
    """Cancel several jobs; one that already ended or does not exist is skipped
    with the reason, and does not stop the others."""
    require_somewhere(principal, Right.CANCEL)
    if not job_ids:
        raise SpecError({"job_id": "select at least one job"})
    if len(job_ids) > 500:
        raise SpecError({"job_id": "cancel at most 500 jobs at once"})
    done: list[str] = []
    skipped: dict[str, str] = {}
    for job_id in dict.fromkeys(job_ids):
        try:
            cancel_job(ctx, principal, job_id)
        except (StateError, NotFoundError, PermissionDenied) as exc:
            skipped[job_id] = exc.message
        else:
            done.append(job_id)
    return Cancelled(tuple(done), skipped)


def cancel_job_of_task(
    ctx: Context, principal: Principal, task_id: str, *, how: str = "revoked"
) -> JobInfo | None:
    """Cancel the job a Celery task belongs to, as ``principal``: the same
    cancel as the job's Cancel button, so a template's ``stop`` roles apply and
    the audit trail names the caller. ``how`` says what the caller did to the
    task (``"revoked through Flower"``) and goes into the job's error.

    Returns None for a task that belongs to no jobsys job, and only to an
    admin: such a task is anybody's (another app on the same broker, a
    housekeeping task), so acting on it, which the caller then does through
    Celery, needs ``admin``; anyone else gets PermissionDenied.
    """
    require_somewhere(principal, Right.CANCEL)
    job_id = _job_of_task(ctx, task_id)
    if job_id is None:
        if not principal.can(Right.ADMIN):
            raise PermissionDenied(
                Right.ADMIN.value,
                principal.role,
                f"task {task_id!r} belongs to no jobsys job; revoking a task outside "
                "jobsys needs the 'admin' right (cancel a jobsys job by its own tasks, "
                "or with its Cancel button)",
            )
        return None
    reason = f"cancelled by {principal.name}: task {task_id} {how}"
    return cancel_job(ctx, principal, job_id, reason=reason)


def _job_of_task(ctx: Context, task_id: str) -> str | None:
    """The job a Celery task id belongs to: a Docker step's task and each
    function chunk are TaskRun rows under their Celery ids. (A function step's
    gather callback has no row, so its id reads as outside jobsys.)"""
    with ctx.sessions() as session:
        return session.scalar(select(TaskRun.job_id).where(TaskRun.id == task_id))


def cancel_for_revoked_task(ctx: Context, task_id: str, *, terminated: bool) -> str | None:
    """A jobsys task revoked from outside (Flower, ``celery control revoke``)
    cancels its job, which is then shown as cancelled with that reason.

    Without this the job would stay ``running`` for ever: a revoked chunk never
    reports, so its chord never calls back (celery/celery#4207). Returns the
    job cancelled, or None when the task is not ours to act on (unknown, or
    its job already over, as after our own cancel's revokes).
    """
    job_id = _job_of_task(ctx, task_id)
    if job_id is None:
        return None
    how = "terminated" if terminated else "revoked"
    try:
        cancel_job(ctx, SYSTEM, job_id, reason=f"cancelled: task {task_id} was {how} in Celery")
    except StateError:
        return None
    return job_id


def is_cancelled(ctx: Context, job_id: str) -> bool:
    """Asked by running tasks every fraction of a second: the broker's flag
    first, the database when the flag is absent (Redis restarted, or down)."""
    try:
        if ctx.dispatcher.is_cancelled(job_id):
            return True
    except DispatchError:
        pass
    with ctx.sessions() as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
    return status == JobStatus.CANCELLED.value


def ended_job_ids(ctx: Context, job_ids: list[str]) -> set[str]:
    """Which of these jobs are ours and have ended: the reaper removes their
    containers. A job this database does not know is another jobsys's sharing
    the Docker engine (or a test's), and its containers are not ours to touch."""
    if not job_ids:
        return set()
    ended = select(Job.id).where(Job.id.in_(job_ids), Job.status.in_([s.value for s in FINISHED]))
    with ctx.sessions() as session:
        return set(session.scalars(ended))
