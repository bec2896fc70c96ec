"""Slots for web threads that follow a job live: how many one principal, one web
process and the deployment may hold at once.

An open event stream holds a web thread for as long as it runs (and so will a
long-poll that waits for a job to end): without caps, 64 streams from one
viewer took every thread ``jobsys run`` gives gunicorn. Each such request
takes a slot of the ``"live"`` pool before it starts::

    with acquire_slot(ctx, principal) as slot:   # TooManyStreams (429) when full
        while waiting:
            ...
            slot.renew()                          # cheap; call it every loop

A slot is counted twice: in this process (``JOBSYS_STREAMS_PER_PROCESS``,
since gunicorn does not spread connections evenly and each process must keep
threads for pages), and in Redis for the principal
(``JOBSYS_STREAMS_PER_PRINCIPAL``) and the deployment
(``JOBSYS_STREAMS_TOTAL``), with a lease its holder renews: a web process
that dies leaves slots that run out within ``LEASE_S``. While Redis is away
the per-process count (per principal too) is the only one, and requests are
not refused for Redis's sake.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType

from redis.exceptions import RedisError

from jobsys.auth import Principal
from jobsys.context import Context
from jobsys.errors import TooManyStreams

log = logging.getLogger(__name__)

#: The pool every thread that waits on a job live counts in.
LIVE = "live"
#: Seconds a slot lives without renewal; renewed every third of it.
LEASE_S = 30.0
#: What a refused caller is told to wait: streams end all the time (a job
#: ends, a tab closes, a stream reaches ``JOBSYS_STREAM_MAX_S``).
RETRY_AFTER_S = 10


class Slot:
    """One held slot. ``release`` may be called any number of times, from any thread."""

    def __init__(self, ctx: Context, owner: str, pool: str, slot_id: str) -> None:
        self.ctx = ctx
        self.owner = owner
        self.pool = pool
        self.id = slot_id
        self._renewed = time.monotonic()
        self._released = False
        self._lock = threading.Lock()

    def renew(self) -> None:
        """Extend the lease once a third of it has passed; a no-op until then."""
        now = time.monotonic()
        if self._released or now - self._renewed < LEASE_S / 3:
            return
        self._renewed = now
        slots = self.ctx.events.slots
        slots.local.renew(self.pool, self.owner, self.id, lease_s=LEASE_S)
        if slots.shared is not None:
            try:
                # Also after Redis came back: then the slot is counted there again.
                slots.shared.renew(self.pool, self.owner, self.id, lease_s=LEASE_S)
            except (RedisError, OSError) as exc:
                log.warning("could not renew live slot %s in Redis: %s", self.id, exc)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        slots = self.ctx.events.slots
        slots.local.release(self.pool, self.owner, self.id)
        if slots.shared is not None:
            try:
                slots.shared.release(self.pool, self.owner, self.id)
            except (RedisError, OSError) as exc:  # its lease runs out instead
                log.warning("could not release live slot %s in Redis: %s", self.id, exc)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire_slot(ctx: Context, principal: Principal, pool: str = LIVE) -> Slot:
    """A slot of ``pool`` for ``principal``, or TooManyStreams saying which cap is full."""
    settings = ctx.settings
    slots = ctx.events.slots
    slot_id = uuid.uuid4().hex
    owner = principal.name
    refusal = slots.local.take(
        pool,
        owner,
        slot_id,
        per_owner=settings.streams_per_principal,
        total=settings.streams_per_process,
        lease_s=LEASE_S,
    )
    if refusal is not None:
        raise _refused(ctx, principal, "process" if refusal == "total" else refusal)
    if slots.shared is not None:
        try:
            refusal = slots.shared.take(
                pool,
                owner,
                slot_id,
                per_owner=settings.streams_per_principal,
                total=settings.streams_total,
                lease_s=LEASE_S,
            )
        except (RedisError, OSError) as exc:
            log.warning("Redis is unreachable; counting live streams per process only: %s", exc)
        if refusal is not None:
            slots.local.release(pool, owner, slot_id)
            raise _refused(ctx, principal, refusal)
    return Slot(ctx, owner, pool, slot_id)


def _refused(ctx: Context, principal: Principal, cap: str) -> TooManyStreams:
    settings = ctx.settings
    wait = f"close one (a browser tab or a follower) or try again in {RETRY_AFTER_S} s"
    if cap == "owner":
        n = settings.streams_per_principal
        message = (
            f"{principal.name!r} already has {n} live event streams open, the most one "
            f"principal may (JOBSYS_STREAMS_PER_PRINCIPAL={n}); {wait}"
        )
    elif cap == "process":
        n = settings.streams_per_process
        message = (
            f"this web process already serves {n} live event streams, the most it may "
            f"while keeping threads for pages (JOBSYS_STREAMS_PER_PROCESS={n}); "
            f"try again in {RETRY_AFTER_S} s"
        )
    else:
        n = settings.streams_total
        message = (
            f"the server already serves {n} live event streams, the most it may "
            f"(JOBSYS_STREAMS_TOTAL={n}); try again in {RETRY_AFTER_S} s"
        )
    return TooManyStreams(message, RETRY_AFTER_S)
