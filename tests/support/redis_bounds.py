"""What may live in Redis without a TTL, and a census of what is there.

Every key jobsys, Celery or kombu make per job or per task must expire (task
results, chord counters, event streams, cancel flags, leases, reply queues);
the only keys without a TTL are a fixed set whose size does not grow with
the number of jobs: the queues themselves, kombu's bindings and its
unacked bookkeeping (bounded by the tasks in flight), the capped global event
stream and the workers' heartbeat hash (one field per worker, forgotten a day
after it stops). Shared by the memory test and the 20,000-job soak.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass

import redis

from jobsys.broker.events import GLOBAL_STREAM, GLOBAL_STREAM_MAXLEN

#: Keys allowed to live without a TTL, as fnmatch patterns.
PERMANENT = (
    "_kombu.binding.*",  # exchange bindings: one per queue
    "_kombu.binding_permanent.*",
    "_kombu.binding_deadlines",
    "unacked",  # tasks in flight (acks_late): bounded by prefetch x concurrency
    "unacked_index",
    "python",  # the queues (and their priority lists)
    "python\x06\x16*",
    "docker",
    "docker\x06\x16*",
    "celery",
    GLOBAL_STREAM,  # capped (XADD MAXLEN)
    "jobsys:workers",  # one field per worker
)


@dataclass(frozen=True)
class Census:
    keys: int
    used_memory: int
    #: Key families (the key up to its first id-like part) and how many of each.
    families: dict[str, int]
    #: Keys without a TTL that are not in PERMANENT.
    unbounded: list[str]

    def describe(self) -> str:
        top = ", ".join(f"{k} {n}" for k, n in sorted(self.families.items(), key=lambda x: -x[1]))
        return f"{self.keys} keys, {self.used_memory / 1024:.0f} KiB used ({top})"


def census(client: redis.Redis) -> Census:
    families: Counter[str] = Counter()
    unbounded: list[str] = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        families[_family(key)] += 1
        if client.ttl(raw) == -1 and not any(fnmatch.fnmatchcase(key, p) for p in PERMANENT):
            unbounded.append(key)
    return Census(
        keys=sum(families.values()),
        used_memory=int(client.info("memory")["used_memory"]),
        families=dict(families),
        unbounded=sorted(unbounded),
    )


def check_bounded(client: redis.Redis, workers_seen: int) -> Census:
    """Assert the key bounds: nothing unbounded, capped stream and hash within their caps."""
    found = census(client)
    assert found.unbounded == [], f"keys without a TTL: {found.unbounded[:20]}"
    if client.exists(GLOBAL_STREAM):
        # XADD MAXLEN ~ trims whole radix-tree nodes: allow a node's worth over the cap.
        assert client.xlen(GLOBAL_STREAM) <= GLOBAL_STREAM_MAXLEN + 200
    assert client.hlen("jobsys:workers") <= workers_seen
    return found


def _family(key: str) -> str:
    if key.startswith("_kombu."):
        return "_kombu.* (bindings)"
    if key.startswith("celery-taskset-meta-") and key.endswith(".c"):
        return "celery-taskset-meta-*.c"  # a chord's "done" claim: 5 minutes
    for prefix in (
        "celery-task-meta-",
        "celery-taskset-meta-",
        "jobsys:events:",
        "jobsys:cancelled:",
        "jobsys:lease:",
    ):
        if key.startswith(prefix):
            return prefix + "*"
    if key.endswith(".reply.celery.pidbox"):
        return "*.reply.celery.pidbox"
    if "\x06\x16" in key:
        return key.split("\x06\x16")[0] + " (priority list)"
    parts = key.split(":")
    return ":".join(p if len(p) < 20 else "*" for p in parts)
