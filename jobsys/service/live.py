"""Following a job live: its events from the stream, resumable by event id."""

from __future__ import annotations

from collections.abc import Iterator

from redis.exceptions import RedisError

from jobsys.auth import Principal
from jobsys.context import Context
from jobsys.events import Event
from jobsys.models import JobStatus
from jobsys.service.jobs import get_job

#: How long one read waits before the follower checks the database and sends
#: a heartbeat (which also tells a web server that the client is gone).
WAIT_MS = 5_000


def follow_job(
    ctx: Context, principal: Principal, job_id: str, after: str | None = None
) -> Iterator[Event | None]:
    """Events after ``after`` (all when None), then live ones, ending with the
    job's final status. ``None`` items are heartbeats for idle stretches.

    Checks rights and the job before returning, so a web handler can answer
    401/403/404 before it starts streaming.
    """
    get_job(ctx, principal, job_id)
    return _follow(ctx, principal, job_id, after or "0")


def _follow(ctx: Context, principal: Principal, job_id: str, cursor: str) -> Iterator[Event | None]:
    while True:
        try:
            events = ctx.events.read(job_id, cursor, block_ms=WAIT_MS)
        except (RedisError, OSError):
            events = []  # the live view waits out a Redis outage; the job goes on
        for event in events:
            cursor = event.id
            yield event
            if event.type == "status" and JobStatus(event.data["status"]).finished:
                return
        if events:
            continue
        job = get_job(ctx, principal, job_id)
        if JobStatus(job.status).finished:
            # Ended while its last events were trimmed or lost (e.g. Redis restarted).
            yield Event(
                id=cursor,
                type="status",
                data={
                    "job_id": job_id,
                    "status": job.status,
                    "error": job.error,
                    "progress": {"done": job.done_tasks, "total": job.total_tasks},
                    "steps": [{"position": s.position, "status": s.status} for s in job.steps],
                },
            )
            return
        yield None
