"""The lost-task sweep: fail what nobody will ever run or report, so that no
job stays ``running`` for ever.

A dispatched task is accounted for while a run holds its lease, a worker has
its message unacknowledged (a dead worker's is redelivered after the
visibility timeout), its message waits in a queue (a queue too long to read
through counts as holding every task of its kind), or a worker answers that
it has it. A task that is none of these for ``lost_task_grace_s``, counted
across sweeps, is lost: a message moving from a queue to a worker, or a lease
being re-created after a Redis restart, is never mistaken for one. Its items
get the reason as their error and its step ends by the usual rules.

The same sweep ends steps whose tasks all ended without the step following
(a chord callback that never came) and jobs stopped between two steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from jobsys.broker.canvas import QUEUE_OF_KIND, QUEUES
from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.service.recovery import (
    abandon_task,
    settle_job,
    settle_step,
    stalled_jobs,
    stalled_steps,
)
from jobsys.states import JobStatus, TaskState
from jobsys.store.models import Job, Step, TaskRun, utcnow

log = logging.getLogger(__name__)

LIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class Swept:
    """What one sweep ended: lost tasks, stalled steps, stalled jobs (by id)."""

    lost: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {"lost": list(self.lost), "steps": list(self.steps), "jobs": list(self.jobs)}


def sweep_lost_tasks(ctx: Context) -> Swept:
    """Fail lost tasks, then end the steps and jobs left behind; see the module."""
    grace = ctx.settings.lost_task_grace_s
    cutoff = utcnow() - timedelta(seconds=grace)
    lost: list[str] = []
    steps: list[str] = []
    try:
        found = _lost_tasks(ctx, grace)
    except DispatchError as exc:
        # Without the broker nothing can be judged lost; what the database
        # alone shows (stalled steps and jobs) is still settled below.
        log.warning("lost-task sweep cannot see the broker: %s", exc)
        found = []
    for row, age in found:
        if abandon_task(ctx, row.id, _reason(row, age)):
            log.warning("task %s of job %s lost: %s", row.id, row.job_id, _reason(row, age))
            lost.append(row.id)
            steps.append(row.step_id)
    steps.extend(s for s in stalled_steps(ctx, cutoff) if s not in steps)
    settled = [s for s in dict.fromkeys(steps) if settle_step(ctx, s) is not None]
    jobs = [j for j in stalled_jobs(ctx, cutoff) if settle_job(ctx, j) is not None]
    return Swept(tuple(lost), tuple(settled), tuple(jobs))


def _lost_tasks(ctx: Context, grace: float) -> list[tuple[Any, float]]:
    """Unended tasks of live jobs unaccounted for ``grace`` seconds, with how long."""
    with ctx.sessions() as session:
        rows = session.execute(
            select(TaskRun.id, TaskRun.job_id, TaskRun.step_id, TaskRun.state, TaskRun.worker)
            .add_columns(Step.kind)
            .join(Step, Step.id == TaskRun.step_id)
            .join(Job, Job.id == TaskRun.job_id)
            .where(
                TaskRun.state.in_([TaskState.PENDING.value, TaskState.RUNNING.value]),
                TaskRun.finished_at.is_(None),
                Step.dispatched_at.is_not(None),
                Step.status.in_(LIVE),
                Job.status.in_(LIVE),
            )
        ).all()
    inflight = ctx.dispatcher.inflight
    accounted: set[str] = set()
    unread: set[str] = set()  # queues too long to read: they may hold anything
    if rows:
        accounted |= set(inflight.lease_holders([r.id for r in rows]))
        accounted |= inflight.delivered_task_ids()
        for queue in QUEUES:
            queued = inflight.queued_task_ids(queue)
            if queued is None:
                unread.add(queue)
            else:
                accounted |= queued
    unaccounted = [r for r in rows if r.id not in accounted and not unread & _queues_of(r.kind)]
    if unaccounted:
        active = inflight.active_task_ids()
        unaccounted = [r for r in unaccounted if r.id not in active]
    ages = inflight.note_unaccounted([r.id for r in unaccounted])
    return [(r, ages[r.id]) for r in unaccounted if ages.get(r.id, 0.0) >= grace]


def _queues_of(kind: str) -> set[str]:
    """Where a task of this kind may wait: its kind's queue, or any if unknown."""
    queue = QUEUE_OF_KIND.get(kind)
    return {queue} if queue else set(QUEUES)


def _reason(row: Any, age: float) -> str:
    if row.state == TaskState.PENDING.value:
        return (
            f"lost before it started: the broker no longer holds its message and no "
            f"worker has it (Redis restarted empty, or the queue was purged); "
            f"unaccounted for {age:.0f} s"
        )
    return (
        f"lost while running on {row.worker}: that run stopped renewing its lease and "
        f"the broker will not deliver the task again (its worker died after the message "
        f"was lost or dropped); unaccounted for {age:.0f} s"
    )
