"""Handing steps to the broker, and asking the cluster about its workers and queues.

The service layer talks to Celery only through a ``Dispatcher``; tests hand
in ``MemoryDispatcher`` where no broker is wanted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import redis
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from jobsys.broker.canvas import QUEUES, StepPlan, priority_lists, step_signature
from jobsys.broker.inflight import InFlight, MemoryInFlight, RedisInFlight
from jobsys.errors import DispatchError

T = TypeVar("T")


#: Redis hash: worker name -> its last heartbeat (JSON), written by each worker.
HEARTBEATS_KEY = "jobsys:workers"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    queues: tuple[str, ...]
    concurrency: int | None
    active: int
    processed: int
    last_heartbeat: datetime | None = None
    #: ``online`` (answers and beats), ``lost`` (its heartbeats stopped).
    state: str = "online"
    tasks_done: int = 0
    tasks_failed: int = 0
    #: Where its function steps' code runs: ``on`` (a sandbox), ``off`` (the
    #: worker's own process, as its operator chose), ``unavailable`` (a sandbox
    #: was wanted and cannot start: it refuses function steps); None when it
    #: runs no function steps or is older than this field.
    isolation: str | None = None
    isolation_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "active": self.active,
            "processed": self.processed,
            "last_heartbeat": self.last_heartbeat.isoformat() if self.last_heartbeat else None,
            "tasks_done": self.tasks_done,
            "tasks_failed": self.tasks_failed,
            "isolation": self.isolation,
            "isolation_note": self.isolation_note,
        }


class Dispatcher(Protocol):
    #: Execution leases and where each task in flight is (see ``jobsys.broker.inflight``).
    inflight: InFlight

    def publish(self, plan: StepPlan) -> None:
        """Send a step's tasks; raise DispatchError when the broker is unreachable."""

    def cancel(self, job_id: str, chunk_task_ids: list[str]) -> None:
        """Flag the job as cancelled for workers and end its function chunks."""

    def is_cancelled(self, job_id: str) -> bool: ...

    def workers(self) -> list[WorkerInfo]: ...

    def queue_lengths(self) -> dict[str, int]: ...

    def record_heartbeat(self, name: str, data: dict[str, Any]) -> None:
        """Note that worker ``name`` is alive, with what it reported."""

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        """Every worker's last heartbeat (also of workers that since went away)."""

    def forget_workers(self, names: list[str]) -> None: ...


def cancel_key(job_id: str) -> str:
    return f"jobsys:cancelled:{job_id}"


#: The flag outlives any job that could still be running.
CANCEL_FLAG_TTL_S = 7 * 24 * 3600


class CeleryDispatcher:
    """The real dispatcher: signatures from ``canvas`` sent through the jobsys Celery app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inflight = RedisInFlight(app)
        self._redis: redis.Redis | None = None
        # Register the task modules here too, so chords can be built by name.
        app.loader.import_default_modules()

    def publish(self, plan: StepPlan) -> None:
        try:
            result = step_signature(plan, self.app).apply_async()
        except Exception as exc:
            # Kombu raises OperationalError, but a chord also touches the result
            # backend, which raises RuntimeError when Redis is gone: either way
            # nothing was (fully) sent and the step goes back to the outbox.
            raise DispatchError(f"the broker is unreachable: {exc}") from exc
        self._stop_following(result)

    def _stop_following(self, result: Any) -> None:
        """Drop the result subscriptions Celery opened on our behalf.

        Building a chord makes the Redis backend SUBSCRIBE to every header
        task's result channel in the publishing process (celery/celery#3812,
        #4824); nobody here waits on them, so they would pile up in the web app.
        """
        results = [result]
        parent = getattr(result, "parent", None)
        if parent is not None:
            results.extend(getattr(parent, "results", None) or [parent])
        backend = self.app.backend
        for res in results:
            with contextlib.suppress(Exception):  # best effort: a leak, not a failure
                backend.remove_pending_result(res)
                # Celery keeps a second, internal waiter per header result; the
                # channel must go even so.
                backend.on_result_fulfilled(res)

    @property
    def redis(self) -> redis.Redis:
        """One client on the broker's Redis for this dispatcher (a connection pool,
        safe across threads and forks), made on first use.

        A kombu connection per call cost a connect, a channel and a new client
        on every request that asked Redis anything (``/api/stats`` asked 20 times).
        A pooled socket that went stale (Redis restarted) fails its command once
        and the one immediate retry reconnects; an unreachable Redis fails fast.
        """
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.app.conf.broker_url,
                socket_connect_timeout=2,
                socket_timeout=10,
                retry=Retry(NoBackoff(), 1),
            )
        return self._redis

    def _with_redis(self, use: Callable[[Any], T]) -> T:
        """Run ``use`` with the broker's Redis; DispatchError when it is unreachable."""
        try:
            return use(self.redis)
        except (OperationalError, RedisError, OSError) as exc:
            raise DispatchError(f"the broker is unreachable: {exc}") from exc

    def cancel(self, job_id: str, chunk_task_ids: list[str]) -> None:
        self._with_redis(lambda r: r.set(cancel_key(job_id), "1", ex=CANCEL_FLAG_TTL_S))
        if chunk_task_ids:
            # Ends the pool process running a chunk; queued ones are dropped.
            # Docker tasks are not terminated: they stop their container first.
            try:
                self.app.control.revoke(chunk_task_ids, terminate=True, signal="SIGTERM")
            except (OperationalError, RedisError, OSError) as exc:
                raise DispatchError(f"the broker is unreachable: {exc}") from exc

    def is_cancelled(self, job_id: str) -> bool:
        return bool(self._with_redis(lambda r: r.exists(cancel_key(job_id))))

    def workers(self) -> list[WorkerInfo]:
        inspect = self.app.control.inspect(timeout=1.0)
        try:
            stats = inspect.stats() or {}
            queues = inspect.active_queues() or {}
            active = inspect.active() or {}
        except (OperationalError, RedisError, OSError) as exc:
            raise DispatchError(f"the broker is unreachable: {exc}") from exc
        result = []
        for name in sorted(stats):
            info = stats[name]
            processed = sum((info.get("total") or {}).values())
            result.append(
                WorkerInfo(
                    name=name,
                    queues=tuple(q["name"] for q in queues.get(name, [])),
                    concurrency=(info.get("pool") or {}).get("max-concurrency"),
                    active=len(active.get(name, [])),
                    processed=processed,
                    last_heartbeat=datetime.now(UTC),
                )
            )
        return result

    def queue_lengths(self) -> dict[str, int]:
        # A queue is one Redis list per priority level: count them all, in one round trip.
        def count(r: redis.Redis) -> dict[str, int]:
            pipe = r.pipeline(transaction=False)
            for q in QUEUES:
                for name in priority_lists(q):
                    pipe.llen(name)
            lengths = iter(pipe.execute())
            return {q: sum(int(next(lengths)) for _ in priority_lists(q)) for q in QUEUES}

        return self._with_redis(count)

    def record_heartbeat(self, name: str, data: dict[str, Any]) -> None:
        self._with_redis(lambda r: r.hset(HEARTBEATS_KEY, name, json.dumps(data)))

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        raw = self._with_redis(lambda r: r.hgetall(HEARTBEATS_KEY))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def forget_workers(self, names: list[str]) -> None:
        if names:
            self._with_redis(lambda r: r.hdel(HEARTBEATS_KEY, *names))


@dataclass
class MemoryDispatcher:
    """Records plans instead of sending them; ``down`` simulates an unreachable broker."""

    published: list[StepPlan] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    revoked: list[str] = field(default_factory=list)
    beats: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False
    inflight: MemoryInFlight = field(default_factory=MemoryInFlight)

    def _reachable(self) -> None:
        if self.down:
            raise DispatchError("the broker is unreachable: simulated outage")

    def publish(self, plan: StepPlan) -> None:
        self._reachable()
        self.published.append(plan)

    def cancel(self, job_id: str, chunk_task_ids: list[str]) -> None:
        self._reachable()
        self.cancelled.add(job_id)
        self.revoked.extend(chunk_task_ids)

    def is_cancelled(self, job_id: str) -> bool:
        self._reachable()
        return job_id in self.cancelled

    def workers(self) -> list[WorkerInfo]:
        self._reachable()
        return []

    def queue_lengths(self) -> dict[str, int]:
        self._reachable()
        return {
            "docker": sum(1 for p in self.published if p.kind == "docker"),
            "python": sum(len(p.chunks) for p in self.published),
        }

    def record_heartbeat(self, name: str, data: dict[str, Any]) -> None:
        self.beats[name] = dict(data)

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        self._reachable()
        return dict(self.beats)

    def forget_workers(self, names: list[str]) -> None:
        for name in names:
            self.beats.pop(name, None)
