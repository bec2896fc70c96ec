"""The database-backed Celery beat scheduler, with one leader among many beats.

    celery -A jobsys.celery_app beat -S jobsys.scheduler:DatabaseScheduler

(the app names it as ``beat_scheduler``, so a plain ``celery beat`` or
``jobsys beat`` uses it too). User schedules live in the database and are
fired by ``service.fire_due_schedules``; the static housekeeping entries of
``beat_schedule.py`` run through Celery's own heap, merged in.

Any number of beat processes may run: each pass, a beat takes or renews a
Redis lock with a TTL (``JOBSYS_BEAT_LOCK_TTL_S``) and only the holder fires
anything. When the leader dies its lock runs out and a stand-by, polling
twice a second, takes over; a leader that stops cleanly hands the lock back at
once. The lock is about efficiency; exactly-once per tick is the database's
unique (schedule, tick) record, which holds even if two beats both lead.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime
from typing import Any

import redis
from celery.beat import Scheduler
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from jobsys.store.models import utcnow

log = logging.getLogger(__name__)

LEADER_KEY = "jobsys:beat:leader"
#: How far past a tick beat wakes for it: ``fire_due_schedules`` compares wall
#: clock readings, and an early wake would find nothing due.
_PAST_TICK_S = 0.0002


class LeaderLock:
    """Leadership of the beat processes: a Redis lock with a TTL, renewed while held.

    ``hold()`` is called once per pass and answers whether this process leads
    now. If Redis cannot be reached the holder keeps leading only until its
    lock would have run out anyway, so two beats never both believe it for long.
    """

    def __init__(self, client: redis.Redis, ttl_s: float, *, key: str = LEADER_KEY) -> None:
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl_s = ttl_s
        self._client = client
        self._lock = Lock(client, key, timeout=ttl_s, thread_local=False)
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def hold(self) -> bool:
        started = time.monotonic()
        try:
            if self.held:
                self._lock.reacquire()  # reset the TTL; raises if someone else has it
            elif self._lock.acquire(blocking=False, token=self.identity):
                log.info("beat %s: now the leader (lock TTL %.1f s)", self.identity, self.ttl_s)
            else:
                return False
        except LockError:
            log.warning("beat %s: lost the leader lock; standing by", self.identity)
            self._valid_until = 0.0
            return False
        except RedisError as exc:
            log.warning("beat %s: cannot reach Redis for the leader lock: %s", self.identity, exc)
            return self.held
        self._valid_until = started + self.ttl_s
        return True

    def release(self) -> None:
        if not self.held:
            return
        self._valid_until = 0.0
        try:
            self._lock.release()
        except (LockError, RedisError) as exc:
            log.warning("beat %s: could not hand back the leader lock: %s", self.identity, exc)

    def holder(self) -> str | None:
        """The identity of the current leader, if any."""
        value = self._client.get(self._lock.name)
        return value.decode() if isinstance(value, bytes) else value


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """Celery beat over the jobsys database, firing only while it leads."""

    #: Longest sleep of the leader between passes: how soon a new, edited,
    #: disabled or deleted schedule takes effect, and how late a tick can be seen.
    poll_s = 1.0
    #: Stand-bys try for the lock this often.
    standby_poll_s = 0.5
    #: When a due schedule could not fire (a database error), retry this soon.
    retry_s = 0.25
    #: Wake this long before a user schedule's tick: leadership is renewed (a
    #: Redis round trip) ahead of it and the rest is slept out to the tick itself,
    #: instead of a whole sleep ending late by the loop's own work.
    lead_s = 0.02

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ctx: Any = None
        self.leader: LeaderLock | None = None
        #: time.monotonic() of the soonest user tick, as of the last pass.
        self._due_at: float | None = None
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        from jobsys.runtime import build_context

        super().setup_schedule()  # the static entries of beat_schedule.py
        settings = self.app.settings
        self._ctx = build_context(app=self.app)
        client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5
        )
        self.leader = LeaderLock(client, settings.beat_lock_ttl_s)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        assert self.leader is not None, "setup_schedule() has not run"
        if not self.leader.hold():
            self._due_at = None
            return self.standby_poll_s
        self._sleep_to_due()
        retry_in = self._fire_user_schedules()
        self._release_held_jobs()
        static_due_in = super().tick(*args, **kwargs)
        wake_in = retry_in
        if self._due_at is not None:
            wake_in = min(wake_in, self._due_at - time.monotonic() - self.lead_s)
        return float(max(0.0, min(static_due_in, wake_in, self.poll_s)))

    def _sleep_to_due(self) -> None:
        """Sleep out the last ``lead_s`` before the soonest user tick, if that is now."""
        if self._due_at is None:
            return
        remaining = self._due_at - time.monotonic()
        if 0 < remaining <= self.lead_s * 2:
            time.sleep(remaining)

    def _fire_user_schedules(self) -> float:
        """Fire what is due and note when the next tick comes (``_due_at``);
        seconds until the next pass must come regardless (``poll_s``, or
        ``retry_s`` after an error)."""
        from jobsys import service

        try:
            for fired in service.fire_due_schedules(self._ctx):
                log.info(
                    "Scheduler: schedule %s tick %s (%s) -> %s %s",
                    fired.schedule,
                    fired.tick.isoformat(),
                    fired.trigger,
                    fired.outcome,
                    fired.job_id or "",
                )
            soonest: datetime | None = service.next_fire_time(self._ctx)
        except Exception:
            log.exception("Scheduler: firing schedules failed; retrying")
            self._due_at = None
            return self.retry_s
        if soonest is None:
            self._due_at = None
            return self.poll_s
        wait = (soonest - utcnow()).total_seconds()
        if wait <= 0:  # due, yet it did not fire (another beat took it): look again soon
            self._due_at = None
            return self.retry_s
        # A hair past the tick, so that the database's clock reading finds it due.
        self._due_at = time.monotonic() + wait + _PAST_TICK_S
        return self.poll_s

    def _release_held_jobs(self) -> None:
        """Start the held jobs whose time has come (every pass: within a second)."""
        from jobsys import service

        try:
            for job_id in service.release_due_jobs(self._ctx):
                log.info("Scheduler: job %s released at its start time", job_id)
        except Exception:
            log.exception("Scheduler: releasing held jobs failed; next pass retries")

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.leader is not None:
                self.leader.release()

    @property
    def info(self) -> str:
        ttl = self.app.settings.beat_lock_ttl_s
        return f"jobsys database schedules; one leader by Redis lock {LEADER_KEY} (TTL {ttl} s)"
