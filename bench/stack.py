"""The live stack a benchmark measures: real worker and web processes on a
fresh SQLite file and Redis database 12 (tests use 13 and 14) of the Redis at
``JOBSYS_BENCH_REDIS_URL`` (default 127.0.0.1:6379)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jobsys.testing import LiveStack, start_stack


@contextlib.contextmanager
def bench_stack() -> Iterator[LiveStack]:
    tmp = Path(tempfile.mkdtemp(prefix="jobsys-bench-"))
    stack_gen = start_stack(
        "bench",
        f"sqlite:///{tmp / 'jobsys.db'}",
        os.environ.get("JOBSYS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        tmp,
    )
    try:
        yield next(stack_gen)
    finally:
        stack_gen.close()
