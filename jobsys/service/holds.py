"""Jobs held back before they start, and their release.

A held job is ``queued`` with a stored ``waiting`` reason, and its first step
is not handed to the broker: nothing sits in Celery (no ``eta``/``countdown``,
whose messages live in worker memory and come back after the visibility
timeout), so a held job survives a restart of every process. The outbox sweep
leaves held jobs alone; beat releases them (``release_due_jobs``, every pass,
at least once a second) when what held them is over. Today that is a start
time (``not_before``); the later holds (limits, pauses, dependencies) are
reasons of the same shape.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update

from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.service.dispatching import dispatch_step
from jobsys.states import JobStatus
from jobsys.store.models import Job, Step, utcnow

log = logging.getLogger(__name__)

#: The most held jobs one pass releases; the next pass takes the rest.
RELEASE_BATCH = 500


def start_hold(not_before: datetime | None) -> dict[str, str] | None:
    """The ``waiting`` of a job given a start time (None for one without)."""
    if not_before is None:
        return None
    return {"reason": "not_before", "detail": f"starts at {not_before.isoformat()}"}


def release_due_jobs(ctx: Context, now: datetime | None = None) -> list[str]:
    """Publish the first step of each held job whose start time has come; the
    jobs released. A job cancelled meanwhile is not ``queued`` and stays put;
    two beats releasing at once publish each job once (the release is an UPDATE
    that only one of them wins, and the step's claim is another)."""
    now = now or utcnow()
    with ctx.sessions() as session:
        # Each job with its first step, the one to send.
        due = list(
            session.execute(
                select(Job.id, Step.id)
                .join(Step, (Step.job_id == Job.id) & (Step.position == 0))
                .where(
                    Job.status == JobStatus.QUEUED.value,
                    Job.not_before <= now,
                    Job.waiting.is_not(None),
                )
                .order_by(Job.not_before, Job.created_at)
                .limit(RELEASE_BATCH)
            )
        )
    released = []
    for job_id, first in due:
        with ctx.sessions.begin() as session:
            won = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status == JobStatus.QUEUED.value,
                    Job.waiting.is_not(None),
                )
                .values(waiting=None)
            ).rowcount
        if not won:
            continue
        released.append(job_id)
        try:
            dispatch_step(ctx, first)
        except DispatchError as exc:  # released; the outbox sweep sends it when the broker is back
            log.warning(
                "job %s released, but stays queued until the broker is back: %s", job_id, exc
            )
    return released
