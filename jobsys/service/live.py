"""Following a job live: its events from the stream, resumable by event id.

A follower holds a web thread, so it is bounded three ways: it takes a slot
(``jobsys.service.stream_slots``: per principal, per process, per
deployment), it lives at most ``JOBSYS_STREAM_MAX_S`` before it ends without
the job's end and the client reconnects from the last id it saw, and it
waits (longer each time, up to ``WAIT_MS``) after every failed Redis read
instead of turning to the database at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

from redis.exceptions import RedisError

from jobsys.auth import Principal
from jobsys.broker.events import START, Event, parse_event_id
from jobsys.context import Context
from jobsys.service.jobs import get_job
from jobsys.service.stream_slots import Slot, acquire_slot
from jobsys.states import JobStatus

log = logging.getLogger(__name__)

#: How long one read waits before the follower checks the database and sends
#: a heartbeat (which also tells a web server that the client is gone).
WAIT_MS = 5_000
#: Seconds a follower waits after the first failed Redis read; each further
#: failure doubles it, up to ``WAIT_MS``. Before, a Redis that answered with an
#: error (a bad id, WRONGTYPE, NOAUTH) made every stream read the database
#: about 1,000 times a second.
BACKOFF_FIRST_S = 0.25


def follow_job(
    ctx: Context, principal: Principal, job_id: str, after: str | None = None
) -> LiveStream:
    """Events after ``after`` (all when None), then live ones, ending with the
    job's final status. ``None`` items are heartbeats for idle stretches.

    Checks the id, rights, the job and the caps before returning, so a web
    handler can answer 400/401/403/404/429 before it starts streaming.
    """
    cursor = parse_event_id(after, "after") if after else START
    get_job(ctx, principal, job_id)
    return LiveStream(ctx, principal, job_id, cursor, acquire_slot(ctx, principal))


class LiveStream:
    """A job's events as an iterator that holds its live slot until it stops.

    It stops when the job ends (``job_ended``), when it reaches
    ``JOBSYS_STREAM_MAX_S`` (then a client resumes from the last event id), or
    when it is closed. The slot is released as the last item is taken, before
    a web server sends the last bytes: a client that reconnects at once finds
    its slot free. ``close`` releases it also if the stream was never read.
    """

    def __init__(
        self, ctx: Context, principal: Principal, job_id: str, cursor: str, slot: Slot
    ) -> None:
        self.job_ended = False
        self._slot = slot
        self._events = self._follow(ctx, principal, job_id, cursor)

    def __iter__(self) -> LiveStream:
        return self

    def __next__(self) -> Event | None:
        try:
            return next(self._events)
        except BaseException:  # the end (StopIteration) too
            self._slot.release()
            raise

    def close(self) -> None:
        self._events.close()
        self._slot.release()

    def _follow(
        self, ctx: Context, principal: Principal, job_id: str, cursor: str
    ) -> Iterator[Event | None]:
        max_s = ctx.settings.stream_max_s
        deadline = time.monotonic() + max_s if max_s > 0 else math.inf
        backoff = 0.0
        while True:
            self._slot.renew()
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms < 1:
                return  # not the job's end: the client reconnects from ``cursor``
            try:
                # block_ms=0 would mean "forever" to Redis: at least 1 ms.
                events = ctx.events.read(
                    job_id, cursor, block_ms=max(1, int(min(WAIT_MS, left_ms)))
                )
                backoff = 0.0
            except (RedisError, OSError) as exc:
                # The live view waits out a Redis outage; the job goes on.
                if not backoff:
                    log.warning("reading the events of job %s failed: %s", job_id, exc)
                backoff = min(max(backoff * 2, BACKOFF_FIRST_S), WAIT_MS / 1000)
                time.sleep(min(backoff, max(0.0, left_ms / 1000)))
                events = []
            for event in events:
                cursor = event.id
                yield event
                if event.type == "status" and JobStatus(event.data["status"]).finished:
                    self.job_ended = True
                    return
            if events:
                continue
            job = get_job(ctx, principal, job_id)
            if JobStatus(job.status).finished:
                # Ended while its last events were trimmed or lost (e.g. Redis restarted).
                self.job_ended = True
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
