"""Rerun and resume: new jobs made from an old one, which stays as it was.

A rerun runs the same spec again from the start. A resume starts where the
old job stopped: steps that completed are carried over with their results,
and of the first function step that did not complete only the items that
failed or never ran are sent again; the new job's results still read in item
order, carried and fresh together.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from jobsys.auth import Principal, Right, require
from jobsys.context import Context
from jobsys.errors import DispatchError, NotFoundError, StateError
from jobsys.models import Job, JobStatus, Step, StepItems, TaskRun, TaskState, utcnow
from jobsys.service.audit import record
from jobsys.service.catalog import require_job_action
from jobsys.service.dispatching import dispatch_step
from jobsys.service.jobs import get_job, log, with_tags
from jobsys.service.records import JobInfo
from jobsys.specs import chunk_bounds

RESUMABLE = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)


def rerun_job(ctx: Context, principal: Principal, job_id: str) -> JobInfo:
    """A new job with the same spec, linked to the original by ``rerun_of``."""
    require(principal, Right.RERUN)
    with ctx.sessions.begin() as session:
        old = _load(session, job_id)
        new = _copy_job(session, old, principal)
        new.steps = [_fresh_step(step) for step in old.steps]
        session.add(new)
    return _start(ctx, principal, new, new.steps[0].id, "job.rerun")


def resume_job(ctx: Context, principal: Principal, job_id: str) -> JobInfo:
    """Continue a failed or cancelled job from its first incomplete step."""
    require(principal, Right.RERUN)
    with ctx.sessions.begin() as session:
        old = _load(session, job_id)
        if old.status not in RESUMABLE:
            raise StateError(
                f"job {job_id} is {old.status}; only failed or cancelled jobs can be resumed "
                "(rerun runs any job again from the start)"
            )
        new = _copy_job(session, old, principal)
        steps: list[Step] = []
        rows: list[tuple[Step, list[TaskRun]]] = []  # task rows to attach once ids exist
        resume_at: Step | None = None
        for step in old.steps:
            if resume_at is not None:
                steps.append(_fresh_step(step))
                continue
            if step.status == JobStatus.COMPLETED.value:
                new_step = _carried_step(step)
                rows.append(
                    (
                        new_step,
                        [
                            _row(r.item_start, r.item_stop, r.results, r)
                            for r in _runs(session, step)
                        ],
                    )
                )
            else:
                new_step = _fresh_step(step)
                if step.kind == "function":
                    rows.append((new_step, _resume_items(session, step, new_step)))
                if step.kind == "docker" or new_step.spec["ranges"]:
                    resume_at = new_step
                else:  # every item had succeeded; only the gather was missing
                    new_step.status = JobStatus.COMPLETED.value
                    new_step.finished_at = utcnow()
            steps.append(new_step)
        new.steps = steps
        if resume_at is None:
            new.status, new.finished_at = JobStatus.COMPLETED.value, utcnow()
        session.add(new)
        session.flush()  # ids for the task rows
        for new_step, task_rows in rows:
            for row in task_rows:
                row.job_id, row.step_id = new.id, new_step.id
            session.add_all(task_rows)
    if resume_at is None:
        return get_job(ctx, principal, new.id)
    return _start(ctx, principal, new, resume_at.id, "job.resume")


def _load(session: Session, job_id: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id).options(selectinload(Job.steps)))
    if job is None:
        raise NotFoundError(f"no job with id {job_id!r}")
    return job


def _copy_job(session: Session, old: Job, principal: Principal) -> Job:
    require_job_action(session, principal, old, "restart")
    return with_tags(
        Job(
            name=old.name,
            owner=principal.name,
            # The code is still the first submitter's: clients trust results by it.
            code_owner=old.code_owner or old.owner,
            spec=old.spec,
            rerun_of=old.id,
            template=old.template,
            variables=old.variables,
        )
    )


def _fresh_step(step: Step) -> Step:
    spec = {k: v for k, v in step.spec.items() if k != "ranges"}
    fresh = Step(
        position=step.position,
        kind=step.kind,
        spec=spec,
        total_tasks=step.total_tasks,
        total_items=step.total_items,
    )
    if step.kind == "function":
        fresh.total_tasks = len(chunk_bounds(step.total_items, spec["chunk_size"]))
        fresh.payload = StepItems(items=list(step.payload.items if step.payload else []))
    return fresh


def _carried_step(step: Step) -> Step:
    carried = Step(
        position=step.position,
        kind=step.kind,
        spec=step.spec,
        status=JobStatus.COMPLETED.value,
        total_tasks=step.total_tasks,
        done_tasks=step.done_tasks,
        total_items=step.total_items,
        failed_items=step.failed_items,
        attempts=step.attempts,
        exit_code=step.exit_code,
        dispatched_at=step.dispatched_at,
        started_at=step.started_at,
        finished_at=step.finished_at,
    )
    if step.payload is not None:  # so that a rerun of the new job has the items too
        carried.payload = StepItems(items=list(step.payload.items))
    return carried


def _runs(session: Session, step: Step) -> list[TaskRun]:
    return list(
        session.scalars(
            select(TaskRun).where(TaskRun.step_id == step.id).order_by(TaskRun.item_start)
        )
    )


def _row(start: int, stop: int, results: Any, like: TaskRun) -> TaskRun:
    """A completed task row carried into the new job (ids are set by the caller)."""
    return TaskRun(
        id=str(uuid.uuid4()),
        chunk_index=like.chunk_index,
        item_start=start,
        item_stop=stop,
        state=TaskState.COMPLETED.value,
        worker=like.worker,
        attempt=like.attempt,
        results=results,
        failed_items=0,
        started_at=like.started_at,
        finished_at=like.finished_at,
    )


def _resume_items(session: Session, old: Step, new: Step) -> list[TaskRun]:
    """Carry the items that succeeded; plan chunks for the rest.

    Returns the carried rows (contiguous runs of succeeded items) and writes
    the ranges still to run into ``new.spec["ranges"]``, in chunk-size pieces.
    """
    n = old.total_items
    outcomes: list[Any] = [None] * n
    source: list[TaskRun | None] = [None] * n
    for run in _runs(session, old):
        for offset, outcome in enumerate(run.results or []):
            if run.item_start + offset < n:
                outcomes[run.item_start + offset] = outcome
                source[run.item_start + offset] = run
    carried: list[TaskRun] = []
    todo: list[list[int]] = []
    size = new.spec["chunk_size"]
    i = 0
    while i < n:
        ok = bool(outcomes[i] and outcomes[i]["ok"])
        j = i
        while j < n and bool(outcomes[j] and outcomes[j]["ok"]) == ok:
            j += 1
        if ok:
            like = source[i]
            assert like is not None
            carried.append(_row(i, j, outcomes[i:j], like))
        else:
            todo.extend([i + a, i + b] for a, b in chunk_bounds(j - i, size))
        i = j
    new.spec = {**new.spec, "ranges": todo}
    new.total_tasks = len(carried) + len(todo)
    new.done_tasks = len(carried)
    return carried


def _start(ctx: Context, principal: Principal, job: Job, step_id: str, action: str) -> JobInfo:
    record(ctx, principal, action, job.id, detail={"of": job.rerun_of})
    try:
        dispatch_step(ctx, step_id)
    except DispatchError as exc:
        log.warning("job %s stays queued until the broker is back: %s", job.id, exc)
    return get_job(ctx, principal, job.id)
