"""Slots with leases: how many of something one owner, and everyone, holds at once.

A web thread that follows a job live (an SSE stream, later a long-poll that
waits for a job to end) takes a slot for as long as it runs. Slots live in a
*pool* (``"live"``); each has an id, an owner (the principal's name) and a
lease that its holder renews while it runs. A holder that dies without
releasing (a web process killed mid-stream) stops renewing, and its slot
runs out with the lease: nothing leaks for longer than one lease.

``RedisSlots`` counts across every web process of a deployment: two sorted
sets per pool (``jobsys:slots:<pool>:all`` and ``...:by:<owner>``), slot id
-> lease expiry, each key expiring with its newest lease so an abandoned
pool leaves nothing behind. ``LocalSlots`` counts inside one process, with
the same rules: the per-process cap, and the fallback while Redis is away.

Only counting lives here; what the caps are and what a refusal says is the
service layer's (``jobsys.service.stream_slots``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

import redis

#: Which cap refused a slot: the owner's, or the pool's total.
Refusal = Literal["owner", "total"]

KEY_PREFIX = "jobsys:slots:"


def pool_key(pool: str) -> str:
    return f"{KEY_PREFIX}{pool}:all"


def owner_key(pool: str, owner: str) -> str:
    return f"{KEY_PREFIX}{pool}:by:{owner}"


class SlotStore(Protocol):
    def take(
        self, pool: str, owner: str, slot_id: str, *, per_owner: int, total: int, lease_s: float
    ) -> Refusal | None:
        """Hold ``slot_id`` for ``lease_s`` unless a cap is reached (0 or less: no
        cap); answers which cap refused it, or None when it is held."""

    def renew(self, pool: str, owner: str, slot_id: str, *, lease_s: float) -> None:
        """Extend a held slot's lease (and hold it again if it had run out)."""

    def release(self, pool: str, owner: str, slot_id: str) -> None: ...


def _over(count: int, cap: int) -> bool:
    return cap > 0 and count > cap


class RedisSlots:
    """Slots counted in Redis, shared by every process that uses the same server.

    ``take`` adds the slot first and counts after, in one MULTI/EXEC, then
    takes it back if a cap is passed: two racing takers at the edge may both
    be refused (each retries), but the caps are never exceeded. Expiry times
    come from each process's clock (``time.time``), so hosts must keep theirs
    within a few seconds of each other (NTP), well inside one lease.
    """

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def take(
        self, pool: str, owner: str, slot_id: str, *, per_owner: int, total: int, lease_s: float
    ) -> Refusal | None:
        now = self.clock()
        keys = (owner_key(pool, owner), pool_key(pool))
        pipe = self.client.pipeline(transaction=True)
        for key in keys:
            pipe.zremrangebyscore(key, "-inf", now)  # leases that ran out
            pipe.zadd(key, {slot_id: now + lease_s})
            pipe.zcard(key)
            pipe.pexpire(key, max(1, int(lease_s * 1000)))
        replies = pipe.execute()
        mine, everyone = int(replies[2]), int(replies[6])
        refusal: Refusal | None = (
            "owner" if _over(mine, per_owner) else "total" if _over(everyone, total) else None
        )
        if refusal is not None:
            self.release(pool, owner, slot_id)
        return refusal

    def renew(self, pool: str, owner: str, slot_id: str, *, lease_s: float) -> None:
        expiry = self.clock() + lease_s
        pipe = self.client.pipeline(transaction=True)
        for key in (owner_key(pool, owner), pool_key(pool)):
            pipe.zadd(key, {slot_id: expiry})
            pipe.pexpire(key, max(1, int(lease_s * 1000)))
        pipe.execute()

    def release(self, pool: str, owner: str, slot_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(owner_key(pool, owner), slot_id)
        pipe.zrem(pool_key(pool), slot_id)
        pipe.execute()


class LocalSlots:
    """Slots counted in this process only, under a lock; same rules as ``RedisSlots``."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        #: pool -> slot id -> (owner, lease expiry)
        self._held: dict[str, dict[str, tuple[str, float]]] = {}

    def take(
        self, pool: str, owner: str, slot_id: str, *, per_owner: int, total: int, lease_s: float
    ) -> Refusal | None:
        with self._lock:
            now = self.clock()
            held = self._held.setdefault(pool, {})
            for gone in [s for s, (_o, expiry) in held.items() if expiry <= now]:
                del held[gone]
            mine = sum(1 for o, _e in held.values() if o == owner)
            if _over(mine + 1, per_owner):
                return "owner"
            if _over(len(held) + 1, total):
                return "total"
            held[slot_id] = (owner, now + lease_s)
            return None

    def renew(self, pool: str, owner: str, slot_id: str, *, lease_s: float) -> None:
        with self._lock:
            self._held.setdefault(pool, {})[slot_id] = (owner, self.clock() + lease_s)

    def release(self, pool: str, owner: str, slot_id: str) -> None:
        with self._lock:
            self._held.get(pool, {}).pop(slot_id, None)


class Slots:
    """A process's slot counts: always its own (``local``), and the deployment's
    in Redis (``shared``) when there is one."""

    def __init__(self, shared: SlotStore | None = None, local: LocalSlots | None = None) -> None:
        self.shared = shared
        self.local = local or LocalSlots()
