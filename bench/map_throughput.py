"""make bench: a function step against raw Celery, both measured in this run.

Starts the live test stack (real Redis, SQLite, one worker with 4 slots, the
web app), then for each size maps ``x * x`` over the items:

- baseline: a bare Celery chord with the same chunk layout, built from
  Celery's own ``celery.accumulate`` task (moves the items, runs no code,
  writes no database);
- jobsys: ``Client.map`` through the HTTP API, signing, chunk tasks that
  record every item in the database, the gather callback, and waiting.

Prints seconds and the ratio jobsys/baseline; the ratio is what to watch.
"""

from __future__ import annotations

import statistics
import sys
import time

from celery import chord, signature

from bench.stack import bench_stack
from jobsys.celery_app import make_celery
from jobsys.specs import FunctionStep, chunk_bounds, chunk_size_for

SIZES = (1_000, 10_000)
REPEATS = 3


def baseline(app, n: int, size: int) -> float:
    items = list(range(n))
    header = [
        signature("celery.accumulate", args=tuple(items[a:b]), app=app, queue="python")
        for a, b in chunk_bounds(n, size)
    ]
    body = signature("celery.accumulate", app=app, queue="python")
    started = time.perf_counter()
    res = chord(header, body, app=app).apply_async()
    # Wait on the callback alone: following the chord's parents is quadratic.
    app.AsyncResult(res.id).get(timeout=300)
    return time.perf_counter() - started


def through_jobsys(client, n: int) -> float:
    started = time.perf_counter()
    job = client.map(lambda x: x * x, range(n)).wait(timeout=300)
    elapsed = time.perf_counter() - started
    assert job.status == "completed", job.error
    return elapsed


def main() -> int:
    with bench_stack() as stack:
        app = make_celery(stack.settings)
        client = stack.client()
        through_jobsys(client, 100)  # warm up worker processes and imports
        print(f"{'items':>8} {'chunks':>7} {'celery s':>9} {'jobsys s':>9} {'ratio':>6}")
        for n in SIZES:
            size = chunk_size_for(
                FunctionStep(function="m:f", items=tuple(range(n))), stack.settings
            )
            chunks = len(chunk_bounds(n, size))
            base = statistics.median(baseline(app, n, size) for _ in range(REPEATS))
            ours = statistics.median(through_jobsys(client, n) for _ in range(REPEATS))
            print(f"{n:>8} {chunks:>7} {base:>9.3f} {ours:>9.3f} {ours / base:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
