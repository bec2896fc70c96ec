"""Rerun and resume: new jobs made from an old one, which stays as it was.

A rerun runs the same spec again from the start. A resume starts where the
old job stopped: steps that completed are carried over with their results,
and of the first function step that did not complete only the items that
failed or never ran are sent again; the new job's results still read in item
order, carried and fresh together.

Either way the stored spec is checked again as a submission of it would be
today (``new_job``): against today's settings (an image no longer on the
allow-list is refused, naming the field), and with the rights of the principal
who creates the new job. That is the rerunner: ``rerun`` for a spec someone
with ``submit`` vetted, and ``submit_code`` when it carries pickled code,
since only a developer runs code. The code's owner (who supplied it) stays the
first submitter. Every pickle copied over, the function, the items and the
carried results, is verified for the old job's step and signed for the new one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from jobsys import envelope
from jobsys.auth import Principal, Right, require_somewhere
from jobsys.context import Context
from jobsys.errors import DispatchError, SignatureError, SpecError, StateError
from jobsys.service.audit import record
from jobsys.service.catalog import require_job_action
from jobsys.service.dispatching import dispatch_step
from jobsys.service.jobs import get_job, job_detail, log, new_job, visible_job
from jobsys.service.records import JobInfo
from jobsys.signing import Binding, Purpose
from jobsys.specs import chunk_bounds
from jobsys.states import JobStatus, TaskState
from jobsys.store.models import Job, Step, TaskRun, utcnow

RESUMABLE = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)


def rerun_job(ctx: Context, principal: Principal, job_id: str) -> JobInfo:
    """A new job with the same spec, linked to the original by ``rerun_of``, in
    the same project."""
    require_somewhere(principal, Right.RERUN)
    with ctx.sessions.begin() as session:
        old = _load(session, principal, job_id)
        new = _copy_job(ctx, session, old, principal)
        session.add(new)
    return _start(ctx, principal, new, new.steps[0].id, "job.rerun")


def resume_job(ctx: Context, principal: Principal, job_id: str) -> JobInfo:
    """Continue a failed or cancelled job from its first incomplete step."""
    require_somewhere(principal, Right.RERUN)
    with ctx.sessions.begin() as session:
        old = _load(session, principal, job_id)
        if old.status not in RESUMABLE:
            raise StateError(
                f"job {job_id} is {old.status}; only failed or cancelled jobs can be resumed "
                "(rerun runs any job again from the start)"
            )
        new = _copy_job(ctx, session, old, principal)
        rows: list[tuple[Step, list[TaskRun]]] = []  # task rows to attach once flushed
        resume_at: Step | None = None
        for step, new_step in zip(old.steps, new.steps, strict=True):
            if resume_at is not None:
                continue  # runs afresh, as new_job made it
            if step.status == JobStatus.COMPLETED.value:
                _carry(step, new_step)
                moved = [
                    _row(r.item_start, r.item_stop, _moved(ctx, r.results, step, new_step), r)
                    for r in _runs(session, step)
                ]
                rows.append((new_step, moved))
            else:
                if step.kind == "function":
                    rows.append((new_step, _resume_items(ctx, session, step, new_step)))
                if step.kind == "docker" or new_step.spec["ranges"]:
                    resume_at = new_step
                else:  # every item had succeeded; only the gather was missing
                    new_step.status = JobStatus.COMPLETED.value
                    new_step.finished_at = utcnow()
        if resume_at is None:
            new.status, new.finished_at = JobStatus.COMPLETED.value, utcnow()
        session.add(new)
        session.flush()
        for new_step, task_rows in rows:
            for row in task_rows:
                row.job_id, row.step_id = new.id, new_step.id
            session.add_all(task_rows)
    if resume_at is None:
        return get_job(ctx, principal, new.id)
    return _start(ctx, principal, new, resume_at.id, "job.resume")


def _load(session: Session, principal: Principal, job_id: str) -> Job:
    """The job to run again; another project's is not found."""
    job = session.scalar(select(Job).where(Job.id == job_id).options(selectinload(Job.steps)))
    visible_job(principal, job_id, job.project if job is not None else None)
    assert job is not None
    return job


def _copy_job(ctx: Context, session: Session, old: Job, principal: Principal) -> Job:
    """The old job's spec as a new, unsaved job: checked today, signed for the new ids."""
    require_job_action(session, principal, old, "restart")
    new = new_job(
        ctx,
        principal,
        stored_spec(ctx, old),
        right=Right.RERUN,
        # The code is still the first submitter's: clients trust results by it.
        code_owner=old.code_owner or old.owner,
        session=session,
        project=old.project,
    )
    new.rerun_of, new.template, new.variables = old.id, old.template, old.variables
    for step in new.steps:
        step.job_id = new.id  # set before the flush: carried results are signed for it
    return new


def stored_spec(ctx: Context, job: Job) -> dict[str, Any]:
    """The job's spec as its submitter sent it: each pickle verified for its place
    in this job and handed back as raw base64, ready to be checked and signed anew.

    A pickle that fails its check (altered, or moved from another job or use) is
    refused as a SpecError naming the field; the blob itself is never quoted."""
    data = {k: v for k, v in job.spec.items() if k != "steps"}
    steps = []
    for step in job.steps:
        # The job's spec is as submitted (a chunk size left out stays left out, to be
        # chosen afresh); only the pickles and items it summarises come from the step.
        raw = dict(job.spec["steps"][step.position])
        if step.kind == "function":
            path = f"steps[{step.position}]"
            function = Binding(Purpose.FUNCTION, job.id, step.id)
            raw["function"] = _unsigned(ctx, step.spec["function"], function, f"{path}.function")
            items = Binding(Purpose.ITEMS, job.id, step.id)
            stored = step.payload.items if step.payload else []
            raw["items"] = [_unsigned(ctx, item, items, f"{path}.items") for item in stored]
        steps.append(raw)
    data["steps"] = steps
    return data


def _unsigned(ctx: Context, obj: Any, binding: Binding, field: str) -> Any:
    try:
        return envelope.unsign_for_wire(
            obj, ctx.signer, binding, legacy=ctx.settings.accept_legacy_signatures
        )
    except SignatureError as exc:
        raise SpecError({field: f"{exc.message}; this job cannot be run again"}) from exc


def _moved(ctx: Context, results: Any, old: Step, new: Step) -> list[Any] | None:
    """Carried outcomes with their pickled values signed for the new job's step."""
    if results is None:
        return None
    source = Binding(Purpose.RESULT, old.job_id, old.id)
    target = Binding(Purpose.RESULT, new.job_id, new.id)
    moved = []
    for outcome in results:
        if outcome and outcome.get("ok"):
            try:
                value = envelope.resign(
                    outcome["value"],
                    ctx.signer,
                    source,
                    target,
                    legacy=ctx.settings.accept_legacy_signatures,
                )
            except SignatureError as exc:
                raise SpecError(
                    {f"steps[{old.position}].results": f"{exc.message}; rerun the job instead"}
                ) from exc
            outcome = {**outcome, "value": value}
        moved.append(outcome)
    return moved


def _carry(old: Step, new: Step) -> None:
    """Give a new step the state of the completed step it stands for."""
    new.status = JobStatus.COMPLETED.value
    for name in (
        "total_tasks",
        "done_tasks",
        "total_items",
        "failed_items",
        "attempts",
        "exit_code",
        "dispatched_at",
        "started_at",
        "finished_at",
    ):
        setattr(new, name, getattr(old, name))


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


def _resume_items(ctx: Context, session: Session, old: Step, new: Step) -> list[TaskRun]:
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
            carried.append(_row(i, j, _moved(ctx, outcomes[i:j], old, new), like))
        else:
            todo.extend([i + a, i + b] for a, b in chunk_bounds(j - i, size))
        i = j
    new.spec = {**new.spec, "ranges": todo}
    new.total_tasks = len(carried) + len(todo)
    new.done_tasks = len(carried)
    return carried


def _start(ctx: Context, principal: Principal, job: Job, step_id: str, action: str) -> JobInfo:
    detail = {**job_detail(job), "of": job.rerun_of}
    record(ctx, principal, action, job.id, detail=detail, project=job.project)
    try:
        dispatch_step(ctx, step_id)
    except DispatchError as exc:
        log.warning("job %s stays queued until the broker is back: %s", job.id, exc)
    return get_job(ctx, principal, job.id)
