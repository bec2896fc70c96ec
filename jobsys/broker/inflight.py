"""What the broker knows about tasks in flight: who runs each one, and whether
its message is still somewhere it can be delivered from.

Two jobs share this seam. Execution leases (``jobsys:lease:<task id>``, SET NX
PX, renewed while the run lives) make sure at most one run of a task is
alive, whatever Redis redelivers. And the lost-task sweep asks where a task
is: leased, delivered to a worker and unacknowledged, or waiting in a queue;
a task that is none of these for long enough will never report.

``RedisInFlight`` reads kombu's own Redis structures (the ``unacked`` hash and
``unacked_index`` sorted set of its Redis transport, one list per queue and
priority level) under the names a kombu channel gives them, so key names and
transport options are kombu's, not copies of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from jobsys.broker.canvas import QUEUES
from jobsys.errors import DispatchError

T = TypeVar("T")

LEASE_PREFIX = "jobsys:lease:"
#: Redis hash: task id -> when the lost-task sweep first found it unaccounted for.
UNACCOUNTED_KEY = "jobsys:unaccounted"

# Renew our own lease; re-create it when it is gone (Redis restarted empty, or
# the lease lapsed while Redis was away) unless another run took it meanwhile.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1
end
return 0
"""


#: The most a queue may hold (bytes, all priority levels) for the sweep to read
#: through it for task ids; a longer one counts as holding every task of its kind.
QUEUE_READ_BYTES = 8 * 1024 * 1024


def _task_id(payload: Any) -> str | None:
    """The Celery task id of a kombu message (as decoded from Redis)."""
    try:
        return str(payload["headers"]["id"])
    except (KeyError, TypeError):
        return None  # not a Celery task message: not ours to judge


def _json(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def lease_key(task_id: str) -> str:
    return LEASE_PREFIX + task_id


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InFlight(Protocol):
    def acquire_lease(
        self, task_id: str, holder: str, ttl_s: float, *, hide: str | None = None
    ) -> str | None:
        """Take the task's lease: None when taken, else who holds it now. ``hide``:
        a delivery tag whose visibility clock to restart in the same round trip
        (see ``hide_delivery``), taken or not: the delivery is ours either way."""

    def take_over_lease(self, task_id: str, dead: str, holder: str, ttl_s: float) -> bool:
        """Take the lease from ``dead``, a holder known to be gone, if it still has it."""

    def renew_lease(self, task_id: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease (re-create it if it vanished); False when another has it."""

    def release_lease(self, task_id: str, holder: str) -> None: ...

    def lease_holders(self, task_ids: list[str]) -> dict[str, str]:
        """The holder of each of these tasks' leases, for those that have a live one."""

    def hide_delivery(self, delivery_tag: str) -> None:
        """Restart the visibility clock of a delivered, unacknowledged message, so
        the broker does not hand it to another worker while its run is alive."""

    def delivered_task_ids(self) -> set[str]:
        """Tasks whose message a worker took and has not acknowledged (running,
        reserved, or left by a dead worker and due for redelivery)."""

    def queued_task_ids(self, queue: str) -> set[str] | None:
        """Tasks whose messages wait in a queue (every priority level), or None
        when the queue is too big to read through (see ``QUEUE_READ_BYTES``)."""

    def active_task_ids(self) -> set[str]:
        """Tasks the workers that answer say they are running or hold reserved."""

    def note_unaccounted(self, task_ids: list[str]) -> dict[str, float]:
        """How many seconds each of these tasks has been unaccounted for (0 for
        one seen for the first time); every other task is forgotten."""


@dataclass(frozen=True)
class BrokerKeys:
    """Where kombu's Redis transport keeps its state, as its channel names it
    (transport options such as ``unacked_key`` and ``global_keyprefix`` included)."""

    unacked: str
    unacked_index: str
    #: Queue name -> its lists, one per priority level.
    queues: dict[str, tuple[str, ...]]


class RedisInFlight:
    """The real one, on the broker's Redis. Leases are renewed every few seconds
    by every running task, so it keeps one client (a connection pool, safe
    across threads and forks) instead of a kombu connection per call."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._client: redis.Redis | None = None
        self._keys: BrokerKeys | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.app.conf.broker_url, socket_connect_timeout=2, socket_timeout=5
            )
        return self._client

    def keys(self, queues: tuple[str, ...] = QUEUES) -> BrokerKeys:
        """kombu's key names (asked of a channel once, and for each new queue)."""
        try:
            return self._named(queues)
        except (OperationalError, RedisError, OSError) as exc:
            raise DispatchError(f"the broker is unreachable: {exc}") from exc

    def _named(self, queues: tuple[str, ...]) -> BrokerKeys:
        if self._keys is None or not set(queues) <= set(self._keys.queues):
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                ch = conn.default_channel
                prefix = ch.global_keyprefix
                named = set(queues) | set(self._keys.queues if self._keys else ())
                self._keys = BrokerKeys(
                    unacked=prefix + ch.unacked_key,
                    unacked_index=prefix + ch.unacked_index_key,
                    # kombu names a priority level's list with its _q_for_pri.
                    queues={
                        q: tuple(
                            dict.fromkeys(prefix + ch._q_for_pri(q, p) for p in ch.priority_steps)
                        )
                        for q in named
                    },
                )
        return self._keys

    def _call(self, use: Callable[[redis.Redis], T]) -> T:
        try:
            return use(self.client)
        except (OperationalError, RedisError, OSError) as exc:
            raise DispatchError(f"the broker is unreachable: {exc}") from exc

    def _eval(self, script: str, key: str, *args: Any) -> int:
        return int(self._call(lambda r: r.eval(script, 1, key, *args)))

    def acquire_lease(
        self, task_id: str, holder: str, ttl_s: float, *, hide: str | None = None
    ) -> str | None:
        # One round trip at each task's start: the take, who holds it if that
        # failed, and the delivery's visibility clock.
        index = self.keys().unacked_index if hide else None

        def take(r: redis.Redis) -> str | None:
            key = lease_key(task_id)
            pipe = r.pipeline(transaction=False)
            pipe.set(key, holder, nx=True, px=_ms(ttl_s))
            pipe.get(key)
            if index is not None and hide is not None:
                # XX: never re-add a message that was acknowledged (or restored) meanwhile.
                pipe.zadd(index, {hide: time.time()}, xx=True)
            taken, current = pipe.execute()[:2]
            if taken:
                return None
            # It ran out between the two commands: try once more next time round.
            return _text(current) if current is not None else ""

        return self._call(take)

    def take_over_lease(self, task_id: str, dead: str, holder: str, ttl_s: float) -> bool:
        return bool(self._eval(_TAKE_OVER, lease_key(task_id), dead, holder, _ms(ttl_s)))

    def renew_lease(self, task_id: str, holder: str, ttl_s: float) -> bool:
        return bool(self._eval(_RENEW, lease_key(task_id), holder, _ms(ttl_s)))

    def release_lease(self, task_id: str, holder: str) -> None:
        self._eval(_RELEASE, lease_key(task_id), holder)

    def lease_holders(self, task_ids: list[str]) -> dict[str, str]:
        if not task_ids:
            return {}
        values = self._call(lambda r: r.mget([lease_key(t) for t in task_ids]))
        return {t: _text(v) for t, v in zip(task_ids, values, strict=True) if v is not None}

    def hide_delivery(self, delivery_tag: str) -> None:
        index = self.keys().unacked_index
        # XX: never re-add a message that was acknowledged (or restored) meanwhile.
        self._call(lambda r: r.zadd(index, {delivery_tag: time.time()}, xx=True))

    def delivered_task_ids(self) -> set[str]:
        unacked = self.keys().unacked
        found = set()
        for raw in self._call(lambda r: r.hvals(unacked)):
            entry = _json(raw)  # [message, exchange, routing key]
            task_id = _task_id(entry[0]) if isinstance(entry, list) and entry else None
            if task_id:
                found.add(task_id)
        return found

    def queued_task_ids(self, queue: str) -> set[str] | None:
        lists = self.keys((queue,)).queues[queue]

        def read(r: redis.Redis) -> set[str] | None:
            size = sum(int(r.memory_usage(name) or 0) for name in lists)
            if size > QUEUE_READ_BYTES:
                return None
            raws = [raw for name in lists for raw in r.lrange(name, 0, -1)]
            return {t for t in (_task_id(_json(raw)) for raw in raws) if t}

        return self._call(read)

    def active_task_ids(self) -> set[str]:
        inspect = self.app.control.inspect(timeout=0.5)
        try:
            replies = [inspect.active() or {}, inspect.reserved() or {}]
        except (OperationalError, RedisError, OSError) as exc:
            raise DispatchError(f"the broker is unreachable: {exc}") from exc
        return {str(t["id"]) for reply in replies for tasks in reply.values() for t in tasks}

    def note_unaccounted(self, task_ids: list[str]) -> dict[str, float]:
        now = time.time()

        def note(r: redis.Redis) -> dict[str, float]:
            wanted = set(task_ids)
            stale = [k for k in map(_text, r.hkeys(UNACCOUNTED_KEY)) if k not in wanted]
            pipe = r.pipeline()
            if stale:
                pipe.hdel(UNACCOUNTED_KEY, *stale)
            for task_id in task_ids:
                pipe.hsetnx(UNACCOUNTED_KEY, task_id, repr(now))
            if task_ids:
                pipe.hmget(UNACCOUNTED_KEY, task_ids)
            replies = pipe.execute()
            if not task_ids:
                return {}
            return {
                t: max(0.0, now - float(v)) for t, v in zip(task_ids, replies[-1], strict=True) if v
            }

        return self._call(note)


@dataclass
class MemoryInFlight:
    """For unit tests: leases and broker state as plain fields a test can set."""

    leases: dict[str, str] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)
    active: set[str] = field(default_factory=set)
    queued: dict[str, set[str]] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)
    unaccounted: dict[str, float] = field(default_factory=dict)
    #: Seconds added to the clock, so a test can let time pass.
    clock_offset_s: float = 0.0

    def acquire_lease(
        self, task_id: str, holder: str, ttl_s: float, *, hide: str | None = None
    ) -> str | None:
        if hide is not None:
            self.hidden.append(hide)
        if task_id in self.leases:
            return self.leases[task_id]
        self.leases[task_id] = holder
        return None

    def take_over_lease(self, task_id: str, dead: str, holder: str, ttl_s: float) -> bool:
        if self.leases.get(task_id) != dead:
            return False
        self.leases[task_id] = holder
        return True

    def renew_lease(self, task_id: str, holder: str, ttl_s: float) -> bool:
        return self.leases.setdefault(task_id, holder) == holder

    def release_lease(self, task_id: str, holder: str) -> None:
        if self.leases.get(task_id) == holder:
            del self.leases[task_id]

    def lease_holders(self, task_ids: list[str]) -> dict[str, str]:
        return {t: self.leases[t] for t in task_ids if t in self.leases}

    def hide_delivery(self, delivery_tag: str) -> None:
        self.hidden.append(delivery_tag)

    def delivered_task_ids(self) -> set[str]:
        return set(self.delivered)

    def queued_task_ids(self, queue: str) -> set[str] | None:
        return set(self.queued.get(queue, set()))

    def active_task_ids(self) -> set[str]:
        return set(self.active)

    def note_unaccounted(self, task_ids: list[str]) -> dict[str, float]:
        now = time.time() + self.clock_offset_s
        self.unaccounted = {t: self.unaccounted.get(t, now) for t in task_ids}
        return {t: now - since for t, since in self.unaccounted.items()}
