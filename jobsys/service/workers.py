"""Workers as operators see them: who is online (sends heartbeats), who was
lost (heartbeats stopped), what each has done.

Each worker writes its heartbeat (every 2 s, Celery's own heartbeat) to one
Redis hash; a worker whose last one is older than ``LOST_AFTER_S`` is shown as
lost, and forgotten a day later.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from jobsys.auth import Principal, Right, require_somewhere
from jobsys.broker.dispatch import WorkerInfo
from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.states import TaskState
from jobsys.store.models import TaskRun

LOST_AFTER_S = 10.0
FORGET_AFTER_S = 24 * 3600.0


def record_heartbeat(
    ctx: Context,
    name: str,
    *,
    active: int,
    processed: int,
    queues: list[str] | None = None,
    concurrency: int | None = None,
    isolation: tuple[str, str] | None = None,
) -> None:
    """Called by each worker on every heartbeat it sends; ``isolation`` is its
    state and why (see ``WorkerInfo.isolation``)."""
    data: dict[str, Any] = {
        "ts": datetime.now(UTC).timestamp(),
        "active": active,
        "processed": processed,
        "queues": queues or [],
        "concurrency": concurrency,
    }
    if isolation is not None:
        data["isolation"], data["isolation_note"] = isolation
    with contextlib.suppress(DispatchError):  # no broker: the worker has no work either
        ctx.dispatcher.record_heartbeat(name, data)


def list_workers(ctx: Context, principal: Principal) -> list[WorkerInfo]:
    """Workers from their heartbeats: online (a beat in the last ``LOST_AFTER_S``)
    or lost, with queues, concurrency, active tasks and the tasks each completed
    and failed. Reads one Redis hash, so pages that refresh every few seconds
    cost a millisecond, not the seconds Celery's inspect broadcast waits."""
    require_somewhere(principal, Right.VIEW)
    now = datetime.now(UTC).timestamp()
    beats = ctx.dispatcher.heartbeats()
    old = [name for name, beat in beats.items() if now - beat["ts"] > FORGET_AFTER_S]
    ctx.dispatcher.forget_workers(old)
    counts = _task_counts(ctx)
    found: list[WorkerInfo] = []
    for name in sorted(set(beats) - set(old)):
        beat: dict[str, Any] = beats[name]
        done, failed = counts.get(name, (0, 0))
        found.append(
            WorkerInfo(
                name=name,
                queues=tuple(beat.get("queues") or ()),
                concurrency=beat.get("concurrency"),
                active=int(beat.get("active", 0)),
                processed=int(beat.get("processed", 0)),
                last_heartbeat=datetime.fromtimestamp(beat["ts"], UTC),
                state="online" if now - beat["ts"] <= LOST_AFTER_S else "lost",
                tasks_done=done,
                tasks_failed=failed,
                isolation=beat.get("isolation"),
                isolation_note=str(beat.get("isolation_note") or ""),
            )
        )
    return found


def _task_counts(ctx: Context) -> dict[str, tuple[int, int]]:
    with ctx.sessions() as session:
        rows = session.execute(
            select(TaskRun.worker, TaskRun.state, func.count())
            .where(
                TaskRun.worker.is_not(None),
                TaskRun.state.in_([TaskState.COMPLETED.value, TaskState.FAILED.value]),
            )
            .group_by(TaskRun.worker, TaskRun.state)
        )
        counts: dict[str, list[int]] = {}
        for worker, state, n in rows:
            counts.setdefault(worker, [0, 0])[0 if state == TaskState.COMPLETED.value else 1] += n
    return {k: (v[0], v[1]) for k, v in counts.items()}
