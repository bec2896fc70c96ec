"""make bench: a 1,000,000-item map through the client, and the peak memory
of every process it passes through.

The client sends the items gzip-compressed and reads the results back in
pages, so its memory stays bounded by a page, not by the item count. The
figures printed are each process's peak resident set (VmHWM): the client
(this process, measured from before the call), the web app's processes and
the worker's processes. Baseline: the same million squares computed locally
with ``map`` in this process, for the wall time.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from bench.stack import bench_stack

ITEMS = 1_000_000


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def peak_mib(pid: int) -> float:
    """The largest VmHWM among the process tree under ``pid``, in MiB."""
    peaks = []
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks, default=0.0)


def main() -> int:
    with bench_stack() as stack:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        with stack.client() as c:
            job = c.map(lambda x: x * x, range(ITEMS))
            sent = time.perf_counter() - started
            job.wait(timeout=900)
            ran = time.perf_counter() - started
            total = checked = 0
            for i, value in enumerate(job.iter_results()):
                total += 1
                checked += value == i * i
        took = time.perf_counter() - started
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        web, worker = (stack.processes[n].pid for n in ("web", "worker"))
        web_peak, worker_peak = peak_mib(web), peak_mib(worker)
        local_started = time.perf_counter()
        local = sum(1 for _ in map(lambda x: x * x, range(ITEMS)))
        local_took = time.perf_counter() - local_started
    assert total == checked == ITEMS == local, (total, checked)
    print(f"map of {ITEMS:,} items: job {job.status}, {total:,} results read back and checked")
    print(f"  submitted in {sent:.1f} s, ran by {ran:.1f} s, results read by {took:.1f} s")
    print(f"  baseline: the same map locally {local_took:.2f} s (ratio {took / local_took:.0f})")
    print(
        f"  peak memory (VmHWM): client {client_peak:.0f} MiB (was {before:.0f} MiB before), "
        f"web {web_peak:.0f} MiB, worker {worker_peak:.0f} MiB"
    )
    return 0 if job.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
