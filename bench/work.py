"""The work both sides run: the same functions for raw Celery's tasks and for
jobsys's maps (which pickle them by value, so no worker needs ``bench`` on
its path)."""

from __future__ import annotations

import time

#: CPU per item of the CPU-bound map.
CPU_ITEM_S = 0.005


def spin(seconds: float) -> None:
    """Busy for ``seconds`` of wall time: CPU-bound, and not stretched further
    by a neighbour's load, so the CPU map measures overhead, not the machine."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def square(x: int) -> int:
    """The no-op item."""
    return x * x


def cpu_item(x: int) -> int:
    """5 ms of CPU."""
    spin(CPU_ITEM_S)
    return x
