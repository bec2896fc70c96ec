"""``make soak``: 20,000 jobs through a live stack on its own Redis, and
Redis memory before, right after, and once the per-job TTLs have passed.

The stack runs with 60-second result and event-stream TTLs (the defaults are
a day) so the whole cycle fits in one run: the claim is that nothing a job
leaves in Redis outlives its TTL, so memory after equals memory before plus
what the TTLs still hold, and returns to the baseline once they pass.
Jobs: function jobs of 1-3 items through the HTTP API (one in ten with a
failing item), and one in a hundred a Docker step. Beat runs alongside, as in
``make run``.

    python -m tests.reliability.soak [JOBS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from tests.support.live import CELERY, private_stack, wait_until
from tests.support.redis_bounds import census, check_bounded
from tests.support.services import BUSYBOX_IMAGE

TTL_S = int(os.environ.get("SOAK_TTL_S", "60"))
#: The stated bound: once the TTLs pass, Redis holds at most this much more than
#: before. What stays is the capped global event stream (10,000 entries, about
#: 3 MiB when full: the first 20,000-job run measured 2.9 MiB of growth against
#: a 2 MiB guess that had left it out) and housekeeping results that beat renews.
BOUND_BYTES = 4 * 1024 * 1024


def spec(i: int) -> dict[str, object]:
    if i % 100 == 99:
        step: dict[str, object] = {"kind": "docker", "image": BUSYBOX_IMAGE, "command": ["true"]}
    else:
        items = [-i, 0, i][: 1 + i % 3] if i % 10 else ["not a number"]
        step = {"kind": "function", "function": "math:fabs", "items": items}
        step["tolerate_failures"] = True
    return {"name": f"soak-{i}", "steps": [step], "tags": ["soak"]}


def main(jobs: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="jobsys-soak-"))
    stack_gen = private_stack(tmp, "soak", result_ttl_s=TTL_S, events_ttl_s=TTL_S)
    stack, server = next(stack_gen)
    # Beat runs the housekeeping a real deployment has: above all the lost-task
    # sweep, which settles a step whose chord counter expired before its last
    # chunk ran (with 60 s result TTLs and a backlog of minutes, many do).
    stack.spawn("beat", [*CELERY, "beat", "-l", "INFO"])
    try:
        client = redis.Redis.from_url(server.url)
        before = census(client)
        started = time.monotonic()
        with stack.http("developer") as http, ThreadPoolExecutor(4) as pool:

            def submit(i: int) -> None:
                http.post("/api/jobs", json=spec(i)).raise_for_status()

            list(pool.map(submit, range(jobs)))
            submitted = time.monotonic() - started

            def settled() -> bool:
                counts = http.get("/api/stats").json()["jobs"]
                return counts["queued"] + counts["running"] == 0

            wait_until(settled, 3600, "every soak job to end")
            counts = http.get("/api/stats").json()["jobs"]
        ran = time.monotonic() - started
        right_after = check_bounded(client, workers_seen=1)
        peak = int(client.info("memory")["used_memory_peak"])
        time.sleep(TTL_S + 5)
        after = check_bounded(client, workers_seen=1)
        # Celery's chord "done" claims keep their own fixed 5 minutes: wait them out too.
        wait_until(lambda: not list(client.scan_iter("celery-taskset-meta-*.c")), 330, "claims")
        settled_after = check_bounded(client, workers_seen=1)
    finally:
        stack_gen.close()  # stops the stack, then its redis-server
    mib = 1024 * 1024
    print(f"soak: {jobs:,} jobs submitted in {submitted:.0f} s, all ended by {ran:.0f} s: {counts}")
    print(f"  Redis before:            {before.describe()}")
    print(f"  right after the jobs:    {right_after.describe()}")
    print(f"  peak used memory:        {peak / mib:.1f} MiB")
    print(f"  {TTL_S + 5} s later (TTLs passed): {after.describe()}")
    print(f"  once chord claims expired: {settled_after.describe()}")
    grew = settled_after.used_memory - before.used_memory
    print(f"  growth over the run: {grew / 1024:.0f} KiB (bound {BOUND_BYTES / mib:.0f} MiB)")
    return 0 if grew <= BOUND_BYTES and counts["completed"] + counts["failed"] == jobs else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
