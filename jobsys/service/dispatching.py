"""Publishing steps to the broker, and the outbox sweep that retries what could not be.

A step is claimed (``dispatched_at`` set by one atomic UPDATE) before it is
published, so the submitting request and the sweep can never both send it.
When publishing fails the claim is undone and the step waits in the outbox.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from jobsys.broker.canvas import ChunkPlan, StepPlan
from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.specs import DEFAULT_PRIORITY, chunk_bounds
from jobsys.states import JobStatus, TaskState
from jobsys.store.models import Job, Step, TaskRun, utcnow

log = logging.getLogger(__name__)


def dispatch_step(ctx: Context, step_id: str) -> bool:
    """Claim and publish one queued step; False when someone else already did."""
    with ctx.sessions.begin() as session:
        claimed = session.execute(
            update(Step)
            .where(
                Step.id == step_id,
                Step.status == JobStatus.QUEUED.value,
                Step.dispatched_at.is_(None),
            )
            .values(dispatched_at=utcnow())
        ).rowcount
        if not claimed:
            return False
        step = session.get_one(Step, step_id)
        # Rows left by an earlier publish that failed are replaced, not added to;
        # rows carried over by a resume (already completed) stay.
        session.execute(
            delete(TaskRun).where(
                TaskRun.step_id == step_id, TaskRun.state == TaskState.PENDING.value
            )
        )
        carried = session.scalar(
            select(func.count()).select_from(TaskRun).where(TaskRun.step_id == step_id)
        )
        plan = _plan(step, first_index=carried or 0)
        session.add_all(_task_rows(step, plan))
    _publish(ctx, plan)
    return True


def claim_new_step(step: Step) -> tuple[StepPlan, list[TaskRun]]:
    """Claim a step not yet stored (a new job's first step, or a schedule's fired
    job): its plan, and its task rows to store with it, so one commit stores the
    job and its claim (every commit is a turn at SQLite's write lock, and a
    tick's job is late by each one). Once that has committed, ``publish_claimed``
    sends the plan. A new step has no earlier rows to replace, so this needs none
    of ``dispatch_step``'s reads."""
    step.dispatched_at = utcnow()
    plan = _plan(step)
    return plan, _task_rows(step, plan)


def publish_claimed(ctx: Context, plan: StepPlan) -> bool:
    """Send a step claimed by ``claim_new_step``; False when the broker refused
    it, and then the outbox sweep has it (its claim undone)."""
    try:
        _publish(ctx, plan)
    except DispatchError as exc:
        log.warning("step %s stays queued until the broker is back: %s", plan.step_id, exc)
        return False
    return True


def _publish(ctx: Context, plan: StepPlan) -> None:
    try:
        ctx.dispatcher.publish(plan)
    except Exception:
        # Whatever went wrong, the claim must not outlive it, or the step
        # would sit claimed but unsent where the outbox sweep never looks.
        with ctx.sessions.begin() as session:
            session.execute(update(Step).where(Step.id == plan.step_id).values(dispatched_at=None))
        raise


def _plan(step: Step, first_index: int = 0) -> StepPlan:
    task_id = str(uuid.uuid4())
    priority = int(step.job.spec.get("priority", DEFAULT_PRIORITY))
    if step.kind == "docker":
        return StepPlan(
            job_id=step.job_id, step_id=step.id, kind="docker", task_id=task_id, priority=priority
        )
    items = step.payload.items if step.payload else []
    # A resumed step runs only the item ranges its spec names; a new one runs all.
    ranges = step.spec.get("ranges")
    if ranges is None:
        ranges = chunk_bounds(len(items), step.spec["chunk_size"])
    chunks = [
        ChunkPlan(
            task_id=str(uuid.uuid4()), index=i, start=start, stop=stop, items=items[start:stop]
        )
        for i, (start, stop) in enumerate(ranges, start=first_index)
    ]
    return StepPlan(
        job_id=step.job_id,
        step_id=step.id,
        kind="function",
        task_id=task_id,
        chunks=chunks,
        priority=priority,
        soft_time_limit_s=step.spec.get("soft_time_limit_s"),
        time_limit_s=step.spec.get("time_limit_s"),
    )


def _task_rows(step: Step, plan: StepPlan) -> list[TaskRun]:
    if plan.kind == "docker":
        return [TaskRun(id=plan.task_id, job_id=step.job_id, step_id=step.id)]
    return [
        TaskRun(
            id=c.task_id,
            job_id=step.job_id,
            step_id=step.id,
            chunk_index=c.index,
            item_start=c.start,
            item_stop=c.stop,
        )
        for c in plan.chunks
    ]


def sweep_outbox(ctx: Context) -> int:
    """Publish every step that is due but was never handed to the broker.

    Due means: its job is live and held by nothing (``service.holds``), every
    earlier step completed, and it has waited longer than ``outbox_grace_s``
    (so a request still publishing is left alone). Returns how many steps were
    published.
    """
    now = utcnow()
    grace = timedelta(seconds=ctx.settings.outbox_grace_s)
    with ctx.sessions() as session:
        rows = session.execute(
            select(Step.id, Step.job_id, Step.position, Job.created_at)
            .join(Job, Job.id == Step.job_id)
            .where(
                Step.status == JobStatus.QUEUED.value,
                Step.dispatched_at.is_(None),
                Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                Job.waiting.is_(None),  # held: released by service.holds, not sent here
            )
            .order_by(Job.created_at)
        ).all()
        due = []
        for step_id, job_id, position, created_at in rows:
            since = created_at
            if position > 0:
                prev = session.execute(
                    select(Step.status, Step.finished_at).where(
                        Step.job_id == job_id, Step.position == position - 1
                    )
                ).one()
                if prev.status != JobStatus.COMPLETED.value or prev.finished_at is None:
                    continue
                since = prev.finished_at
            if now - since >= grace:
                due.append(step_id)
    published = 0
    for step_id in due:
        try:
            published += dispatch_step(ctx, step_id)
        except DispatchError as exc:
            log.warning("outbox sweep stopped, broker still unreachable: %s", exc)
            break
    return published
