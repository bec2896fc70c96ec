"""One-call jobs (latency) and submit throughput.

One call: ``calls`` sequential calls per repetition, each timed from the
submit until its result is in hand. Raw Celery: ``noop.delay(x).get()``.
jobsys: ``Client.submit(square, x)`` then ``wait()`` and ``results()[0]``,
and ``Executor.submit(square, x).result()``.

Throughput: ``submits`` one-step jobs ``POST /api/jobs`` from 8 threads (a
client each), jobs accepted per second, against raw ``apply_async`` of as
many tasks from 8 threads. Each side's work is drained before the next rep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from celery import Celery

from bench.env import JobsysStack, RawWorker
from bench.results import Row, percentile
from bench.work import square
from jobsys import Executor

THREADS = 8
P99_LIMIT_MS = 50.0
#: A one-step job: one item of a built-in function, the least a job can be.
ONE_STEP = {
    "name": "submit-bench",
    "steps": [{"kind": "function", "function": "builtins:abs", "items": [-1]}],
}


def latencies(call: Callable[[int], Any], calls: int) -> list[float]:
    """Milliseconds of each of ``calls`` sequential calls; checks each answer."""
    out = []
    for i in range(calls):
        started = time.perf_counter()
        value = call(i)
        out.append((time.perf_counter() - started) * 1000)
        if value != i * i:
            raise AssertionError(f"call {i} answered {value!r}")
    return out


def one_call_rows(
    stack: JobsysStack, raw: RawWorker, calls: int, reps: int, timeout: float
) -> list[Row]:
    from bench.raw_app import noop

    with raw.measuring():
        latencies(lambda x: noop.delay(x).get(timeout=timeout), 5)
        base = [latencies(lambda x: noop.delay(x).get(timeout=timeout), calls) for _ in range(reps)]
    base_p50 = [percentile(r, 50) for r in base]
    base_p99 = [percentile(r, 99) for r in base]

    with stack.client() as client:

        def via_client(x: int) -> Any:
            return client.submit(square, x).wait(timeout=timeout).results()[0]

        latencies(via_client, 3)
        by_client = [latencies(via_client, calls) for _ in range(reps)]
        with Executor(client=client) as ex:

            def via_executor(x: int) -> Any:
                return ex.submit(square, x).result(timeout=timeout)

            latencies(via_executor, 3)
            by_executor = [latencies(via_executor, calls) for _ in range(reps)]

    rows = []
    raw_p99 = sorted(base_p99)[len(base_p99) // 2]
    for label, runs in (
        ("Client.submit(f, x) + result", by_client),
        ("Executor.submit(f, x).result()", by_executor),
    ):
        rows.append(
            Row(
                f"one call p50, {label}",
                "ms",
                4.0,
                base_p50,
                [percentile(r, 50) for r in runs],
                f"baseline = raw delay().get() p50; {calls} sequential calls per rep",
            )
        )
        rows.append(
            Row.absolute_limit(
                f"one call p99, {label}",
                "ms",
                P99_LIMIT_MS,
                [percentile(r, 99) for r in runs],
                f"absolute: PASS when p99 < {P99_LIMIT_MS:.0f} ms (baseline column = the limit); "
                f"raw delay().get() p99 {raw_p99:.1f} ms",
            )
        )
    return rows


def _in_threads(work: Callable[[int, list[Any]], None], total: int) -> tuple[float, list[Any]]:
    """Run ``work(count, out)`` on THREADS threads sharing ``total``; seconds
    from the common start until the last thread is done, and what they put out."""
    shares = [total // THREADS + (1 if i < total % THREADS else 0) for i in range(THREADS)]
    outs: list[list[Any]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    gate = threading.Barrier(THREADS + 1)

    def run(i: int) -> None:
        gate.wait()
        try:
            work(shares[i], outs[i])
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    took = time.perf_counter() - started
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise TimeoutError("submitting threads still running after 600 s")
    return took, [x for out in outs for x in out]


def raw_rates(app: Celery, submits: int, reps: int, timeout: float) -> list[float]:
    from bench.raw_app import noop

    def work(count: int, out: list[Any]) -> None:
        for i in range(count):
            out.append(noop.apply_async((i,)))

    rates = []
    for _ in range(reps):
        took, results = _in_threads(work, submits)
        rates.append(submits / took)
        for res in results:  # drain: nothing of this rep runs into the next
            res.get(timeout=timeout)
    return rates


def jobsys_rates(
    stack: JobsysStack, submits: int, reps: int, timeout: float
) -> tuple[list[float], int]:
    """Accepted jobs per second of each rep, and how many answers were 429
    (retried after ``retry_after_s``, as a client should; the time counts)."""
    stack.token()  # made before the clock starts

    throttled: list[int] = []

    def work(count: int, out: list[Any]) -> None:
        with stack.http() as http:
            while len(out) < count:
                r = http.post("/api/jobs", json=ONE_STEP)
                if r.status_code == 429:  # what a client must do: wait as told, send again
                    throttled.append(1)
                    time.sleep(min(5.0, float(r.json().get("retry_after_s") or 1)))
                    continue
                if r.status_code != 202:
                    raise AssertionError(f"POST /api/jobs: {r.status_code} {r.text[:300]}")
                out.append(r.json()["id"])

    rates = []
    for _ in range(reps):
        took, ids = _in_threads(work, submits)
        rates.append(submits / took)
        with stack.client() as client:
            for job_id in ids:
                client.job(job_id).wait(timeout=timeout)
    return rates, len(throttled)


def floor_rates(url: str, submits: int, reps: int) -> list[float]:
    """``jobsys_rates`` against the bare app (bench/bare_app.py): the same
    requests from the same threads, answered by a server that does nothing."""

    def work(count: int, out: list[Any]) -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer -"}) as http:
            for _ in range(count):
                r = http.post("/api/jobs", json=ONE_STEP)
                if r.status_code != 202:
                    raise AssertionError(f"bare POST /api/jobs: {r.status_code} {r.text[:300]}")
                out.append(r.json()["id"])

    return [submits / _in_threads(work, submits)[0] for _ in range(reps)]


def floor_row(base: list[float], url: str, submits: int, reps: int) -> Row:
    return Row(
        "submit throughput floor: bare Flask app",
        "per_s",
        2.0,
        base,
        floor_rates(url, submits, reps),
        f"reference, not a target: {submits} POST /api/jobs from {THREADS} threads to a Flask "
        "app that parses the body and answers 202 (bench/bare_app.py: no token, database or "
        "broker), under the jobsys web app's gunicorn command; ratio = raw apply_async rate / "
        "its rate, the best any submit through this web stack could reach here",
        reference=True,
    )


def throughput_row(
    label: str, base: list[float], stack: JobsysStack, submits: int, reps: int, timeout: float
) -> Row:
    ours, throttled = jobsys_rates(stack, submits, reps, timeout)
    return Row(
        f"submit throughput, {label}",
        "per_s",
        2.0,
        base,
        ours,
        f"{submits} one-step jobs, POST /api/jobs from {THREADS} threads vs raw apply_async "
        f"from {THREADS} threads; ratio = raw rate / ours, target 2.0 = at least 0.5x raw; "
        f"{throttled} answers 429 (retried after retry_after_s, time counted)",
    )
