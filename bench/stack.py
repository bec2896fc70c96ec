"""The live stack a benchmark measures: real worker and web processes on a
fresh SQLite file and Redis database 12 (tests use 13 and 14)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jobsys.testing import LiveStack, start_stack


@contextlib.contextmanager
def bench_stack() -> Iterator[LiveStack]:
    tmp = Path(tempfile.mkdtemp(prefix="jobsys-bench-"))
    stack_gen = start_stack(
        "bench", f"sqlite:///{tmp / 'jobsys.db'}", "redis://127.0.0.1:6379/12", tmp
    )
    try:
        yield next(stack_gen)
    finally:
        stack_gen.close()
