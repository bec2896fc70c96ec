"""The raw Celery baseline: what a user writes by hand instead of jobsys.

Its worker runs as ``python -m celery -A bench.raw_app worker -Q raw -c 2 -P
prefork``, the same count and pool as each jobsys queue's worker, on the same
Redis (another database number), with ``BENCH_RAW_REDIS_URL`` naming it.
Defaults are Celery's own except the serializer pinned to JSON (jobsys's
chunks are JSON too) and results kept in the same Redis.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench.work import cpu_item, square

QUEUE = "raw"

app = Celery(
    "bench_raw",
    broker=os.environ.get("BENCH_RAW_REDIS_URL", "redis://127.0.0.1:6379/3"),
    backend=os.environ.get("BENCH_RAW_REDIS_URL", "redis://127.0.0.1:6379/3"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def configure(redis_url: str) -> Celery:
    """Point this process's app at the bench's Redis (the worker gets the URL
    in its environment)."""
    app.conf.broker_url = app.conf.result_backend = redis_url
    return app


@app.task(name="bench.noop")
def noop(x: int) -> int:
    return square(x)


@app.task(name="bench.cpu")
def cpu(x: int) -> int:
    return cpu_item(x)


@app.task(name="bench.flatten")
def flatten(parts: list[list[Any]]) -> list[Any]:
    """A chord's body: the chunks' results as one list, in item order."""
    return [value for part in parts for value in part]
