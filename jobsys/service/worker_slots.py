"""How many function chunks the cluster runs at once: the slots automatic chunk
sizes are cut for (``jobsys.specs.chunk_size_for``).

Every worker's heartbeat (every 2 s) already lands in one Redis hash with its
queues and ``-c`` (``jobsys.service.workers``), so the count is the sum of the
concurrency of the online workers that consume the python queue: one
``HGETALL``, reused for ``slots_cache_s`` so a burst of submits reads it once.
Celery's ``inspect stats`` would wait out a broadcast timeout on every submit.
``JOBSYS_PARALLELISM`` set (above 0) wins; with no worker online yet (or Redis
away) the count is ``fallback_parallelism``: the job waits for workers anyway,
and its chunks stay valid whoever runs them.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from jobsys.broker.canvas import PYTHON_QUEUE
from jobsys.context import Context
from jobsys.errors import DispatchError
from jobsys.service.workers import LOST_AFTER_S

_lock = threading.Lock()
#: id(dispatcher) -> (the dispatcher, when read, slots); the dispatcher is kept
#: so its id cannot be reused by another one while the entry lives.
_cache: dict[int, tuple[Any, float, int]] = {}


def function_slots(ctx: Context) -> int:
    """Worker slots for function chunks: the setting, else the workers' report."""
    if ctx.settings.parallelism > 0:
        return ctx.settings.parallelism
    key, now = id(ctx.dispatcher), time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if (
            hit is not None
            and hit[0] is ctx.dispatcher
            and now - hit[1] < ctx.settings.slots_cache_s
        ):
            return hit[2]
    slots = _reported_slots(ctx) or ctx.settings.fallback_parallelism
    with _lock:
        _cache[key] = (ctx.dispatcher, now, slots)
    return slots


def _reported_slots(ctx: Context) -> int:
    try:
        beats = ctx.dispatcher.heartbeats()
    except DispatchError:
        return 0
    now = datetime.now(UTC).timestamp()
    total = 0
    for beat in beats.values():
        concurrency = beat.get("concurrency")
        if (
            isinstance(concurrency, int)
            and concurrency > 0
            and PYTHON_QUEUE in (beat.get("queues") or ())
            and now - float(beat.get("ts", 0)) <= LOST_AFTER_S
        ):
            total += concurrency
    return total
