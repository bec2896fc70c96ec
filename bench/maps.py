"""Map rows: no-op maps against the best raw Celery layout, the CPU-bound map
against the ideal, and the largest map's peak memory per process.

Both sides are timed from submit until every result is a Python list in the
caller's hands. jobsys: ``Client.map(square, items)``, ``wait()``,
``results()``. Raw Celery: ``noop.chunks(items, 1000).get()`` and a chord of
the same chunks into one flattening task; the faster layout's median is the
baseline.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
from celery import Celery, chord

import bench.work
from bench.env import JobsysStack, RawWorker
from bench.results import Row
from bench.work import CPU_ITEM_S, cpu_item, square

#: Raw Celery's chunk size, the issue's "best layout" for cheap items.
RAW_CHUNK = 1000
#: The jobsys side pickles the work by value: the workers need no ``bench``.
cloudpickle.register_pickle_by_value(bench.work)


def raw_chunks(app: Celery, n: int, timeout: float) -> float:
    from bench.raw_app import noop

    started = time.perf_counter()
    parts = noop.chunks(((i,) for i in range(n)), RAW_CHUNK).apply_async().get(timeout=timeout)
    values = [v for part in parts for v in part]
    took = time.perf_counter() - started
    _check(values, n)
    return took


def raw_chord(app: Celery, n: int, timeout: float) -> float:
    from bench.raw_app import flatten, noop

    started = time.perf_counter()
    header = noop.chunks(((i,) for i in range(n)), RAW_CHUNK).group()
    res = chord(header, flatten.s()).apply_async()
    # The body's result alone: following the chord's parents is quadratic.
    values = app.AsyncResult(res.id).get(timeout=timeout)
    took = time.perf_counter() - started
    _check(values, n)
    return took


def jobsys_map(stack: JobsysStack, fn: Any, n: int, timeout: float) -> float:
    with stack.client() as client:
        started = time.perf_counter()
        job = client.map(fn, range(n))
        job.wait(timeout=timeout)
        values = job.results()
        took = time.perf_counter() - started
    if fn is square:
        _check(values, n)
    elif len(values) != n:
        raise AssertionError(f"{len(values)} results for {n} items")
    return took


def _check(values: list[Any], n: int) -> None:
    if len(values) != n or values[-1] != (n - 1) ** 2 or values[n // 2] != (n // 2) ** 2:
        raise AssertionError(f"wrong results: {len(values)} for {n} items")


def map_row(
    stack: JobsysStack, raw: RawWorker, n: int, reps: int, target: float, timeout: float
) -> Row:
    with raw.measuring() as app:
        raw_chunks(app, min(n, 2 * RAW_CHUNK), timeout)  # warm the worker's processes
        layouts = {
            "chunks().get()": [raw_chunks(app, n, timeout) for _ in range(reps)],
            "chord over chunks": [raw_chord(app, n, timeout) for _ in range(reps)],
        }
    best = min(layouts, key=lambda k: statistics.median(layouts[k]))
    jobsys_map(stack, square, 100, timeout)  # warm up
    ours = [jobsys_map(stack, square, n, timeout) for _ in range(reps)]
    other = next(k for k in layouts if k != best)
    note = (
        f"baseline = raw {best} (chunks of {RAW_CHUNK}); "
        f"{other}: {statistics.median(layouts[other]):.3f} s"
    )
    return Row(f"map {n:,} no-op items", "s", target, layouts[best], ours, note)


def cpu_row(stack: JobsysStack, n: int, reps: int, timeout: float) -> Row:
    """5 ms of CPU per item against the ideal: every slot busy, no overhead."""
    slots = stack.settings.python_concurrency
    ideal = n * CPU_ITEM_S / slots
    ours = [jobsys_map(stack, cpu_item, n, timeout) for _ in range(reps)]
    note = (
        f"baseline = ideal time, {n:,} x {CPU_ITEM_S * 1000:.0f} ms / {slots} slots "
        f"({slots / CPU_ITEM_S:.0f} items/s); target 1/0.9: at least 90% of ideal; "
        f"efficiency {ideal / statistics.median(ours):.0%}"
    )
    return Row(f"map {n:,} x 5 ms CPU vs ideal", "s", round(1 / 0.9, 3), [ideal], ours, note)


# -- the largest map, with the peak memory of every process it passes ------------


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def reset_peaks(pid: int) -> bool:
    """Start every process under ``pid`` counting its peak afresh (Linux's
    ``clear_refs`` 5); False when the kernel or our rights do not allow it."""
    ok = True
    for p in tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def peak_mib(pid: int) -> float:
    """The largest peak resident set (VmHWM) of one process under ``pid``, in MiB."""
    peaks = [_vm_hwm_mib(Path(f"/proc/{p}/status")) for p in tree(pid)]
    return max((peak for peak in peaks if peak is not None), default=0.0)


def _vm_hwm_mib(status: Path) -> float | None:
    """VmHWM from a ``/proc/<pid>/status`` file, in MiB; None when it cannot be read."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def client_map(url: str, token: str, n: int, timeout: float) -> dict[str, float]:
    """One map in a fresh process (``python -m bench.maps``), so its peak is
    the client's alone, not the bench's."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.maps", url, token, str(n), str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the client process failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def large_map_rows(
    stack: JobsysStack,
    raw: RawWorker,
    n: int,
    reps: int,
    target: float,
    timeout: float,
    limit_mib: float,
) -> list[Row]:
    """The largest map's time row (its client in a process of its own) and one
    memory row each for the client, the web app and the python worker."""
    with raw.measuring() as app:
        raw_chunks(app, 2 * RAW_CHUNK, timeout)
        layouts = {
            "chunks().get()": [raw_chunks(app, n, timeout) for _ in range(reps)],
            "chord over chunks": [raw_chord(app, n, timeout) for _ in range(reps)],
        }
    best = min(layouts, key=lambda k: statistics.median(layouts[k]))
    web, worker = stack.pids("web"), stack.pids("worker-python")
    times: list[float] = []
    peaks: dict[str, list[float]] = {"client": [], "web": [], "python worker": []}
    fresh = True
    for _ in range(reps):
        reset = [reset_peaks(web), reset_peaks(worker)]  # both, whatever the first says
        fresh = fresh and all(reset)
        got = client_map(stack.url, stack.token(), n, timeout)
        times.append(got["seconds"])
        peaks["client"].append(got["peak_mib"])
        peaks["web"].append(peak_mib(web))
        peaks["python worker"].append(peak_mib(worker))
    other = next(k for k in layouts if k != best)
    rows = [
        Row(
            f"map {n:,} no-op items",
            "s",
            target,
            layouts[best],
            times,
            f"baseline = raw {best} (chunks of {RAW_CHUNK}); "
            f"{other}: {statistics.median(layouts[other]):.3f} s; client in its own process",
        )
    ]
    how = (
        "peak RSS (VmHWM) of the largest process, reset before each rep"
        if fresh
        else "peak RSS (VmHWM) since the process started (could not reset it)"
    )
    for part, values in peaks.items():
        rows.append(
            Row.absolute_limit(
                f"map {n:,} peak memory, {part}",
                "MiB",
                limit_mib,
                values,
                f"absolute: under {limit_mib:.0f} MiB; {how}",
            )
        )
    return rows


def _main(argv: list[str]) -> int:
    """The client process of ``client_map``: prints its time and peak as JSON."""
    from jobsys import Client

    url, token, n, timeout = argv[0], argv[1], int(argv[2]), float(argv[3])
    with Client(url, token=token, timeout=120) as client:
        started = time.perf_counter()
        job = client.map(square, range(n))
        job.wait(timeout=timeout)
        count = checked = 0
        for i, value in enumerate(job.iter_results()):
            count += 1
            checked += value == i * i
        took = time.perf_counter() - started
    if count != n or checked != n:
        print(f"{count} results, {checked} right, of {n}", file=sys.stderr)
        return 1
    print(json.dumps({"seconds": took, "peak_mib": own_peak_mib()}))
    return 0


def own_peak_mib() -> float:
    """This process's peak resident set since it started, in MiB.

    VmHWM, not ``ru_maxrss``: on Linux a child made by (v)fork and exec keeps
    its parent's high-water mark in ``ru_maxrss``, so the client reported the
    bench's own peak (the raw side's million results, 336 MiB) as its own."""
    peak = _vm_hwm_mib(Path("/proc/self/status"))
    if peak is not None:
        return peak
    import resource  # not Linux: the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
