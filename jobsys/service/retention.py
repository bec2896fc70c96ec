"""Retention: forgetting finished jobs and schedule runs past their keep-by date,
and idempotency keys past their day.

Off by default (``JOBSYS_RETENTION_DAYS=0`` keeps everything): jobsys never
drops a job, log line or result on its own unless an operator asked for it.
When on, an hourly beat entry deletes, in batches so no lock is held long,
finished jobs that ended before the cut (their steps, tasks and log lines go
with them) and schedule runs fired before it. Running and queued jobs are
never touched, however old. Idempotency keys older than their 24 h window go
on every run, whatever the setting: they only ever name a job for a day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session

from jobsys.context import Context
from jobsys.service.idempotency import WINDOW
from jobsys.states import FINISHED
from jobsys.store.models import IdempotencyKey, Job, ScheduleRun, utcnow

BATCH = 500


@dataclass(frozen=True)
class Purged:
    jobs: int = 0
    schedule_runs: int = 0
    idempotency_keys: int = 0


def purge_history(ctx: Context, now: datetime | None = None) -> Purged:
    now = now or utcnow()
    stale_keys = select(IdempotencyKey.id).where(IdempotencyKey.created_at < now - WINDOW)
    keys = _in_batches(ctx, stale_keys, _drop_keys)
    days = ctx.settings.retention_days
    if days <= 0:
        return Purged(idempotency_keys=keys)
    cut = now - timedelta(days=days)
    runs = _in_batches(ctx, select(ScheduleRun.id).where(ScheduleRun.fired_at < cut), _drop_runs)
    finished = [s.value for s in FINISHED]
    old_jobs = select(Job.id).where(Job.status.in_(finished), Job.finished_at < cut)
    return Purged(
        jobs=_in_batches(ctx, old_jobs, _drop_jobs), schedule_runs=runs, idempotency_keys=keys
    )


def _in_batches(
    ctx: Context, query: Select[Any], drop: Callable[[Session, list[Any]], None]
) -> int:
    total = 0
    while True:
        with ctx.sessions.begin() as session:
            ids = list(session.scalars(query.limit(BATCH)))
            if not ids:
                return total
            drop(session, ids)
            total += len(ids)


def _drop_keys(session: Session, ids: list[Any]) -> None:
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))


def _drop_runs(session: Session, ids: list[Any]) -> None:
    session.execute(delete(ScheduleRun).where(ScheduleRun.id.in_(ids)))


def _drop_jobs(session: Session, ids: list[Any]) -> None:
    # A rerun keeps its place when the job it reran is forgotten.
    session.execute(update(Job).where(Job.rerun_of.in_(ids)).values(rerun_of=None))
    session.execute(delete(Job).where(Job.id.in_(ids)))
