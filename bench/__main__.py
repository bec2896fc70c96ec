"""``make bench`` (``python -m bench``) and ``make bench-quick`` (``--quick``).

Starts everything it measures (bench/env.py), measures every row of issue
16's targets with both sides in this run, prints one table and writes the
same rows to ``bench/results.json`` (``--json`` elsewhere; the quick run
writes ``.jobsys/bench-quick.json`` so it never replaces the quoted file).

Exit code: 0 when every row was measured or deliberately skipped, whatever
its PASS/FAIL (the table is the verdict); 1 when a row could not be measured
(the harness or the product broke: the traceback is printed); 130 on Ctrl-C.
Every process it started is stopped in all three cases.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from bench import calls, docker_steps, job_list, maps, schedule_lateness
from bench.env import (
    JobsysStack,
    Processes,
    RawWorker,
    docker_image_ready,
    postgres_url,
    start_redis,
)
from bench.results import ERROR, Row, table, write_json
from jobsys.stack import web_command
from jobsys.testing import free_port, wait_until

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    """How big each row is: the full run, or the quick one CI runs."""

    reps: int
    #: (items, target) of the no-op maps; the last one also gives the memory rows.
    maps: tuple[tuple[int, float], ...]
    cpu_items: int
    calls: int
    docker_tries: int
    submits: int
    cancel_tries: int
    log_lines: int
    list_jobs: int
    list_requests: int
    ticks: int
    timeout: float
    #: Raw worker (and the PostgreSQL stack) up for the whole run, idle while
    #: not measured: saves their start-up times in the quick run.
    keep_up: bool
    memory_limit_mib: float = 300.0


FULL = Plan(
    reps=3,
    maps=((10_000, 1.5), (100_000, 1.3), (1_000_000, 1.3)),
    cpu_items=10_000,
    calls=200,
    docker_tries=20,
    submits=400,
    cancel_tries=10,
    log_lines=200,
    list_jobs=job_list.JOBS,
    list_requests=20,
    ticks=30,
    timeout=900,
    keep_up=False,
)
QUICK = Plan(
    reps=1,
    maps=((1_000, 1.5), (2_000, 1.3)),
    cpu_items=200,
    calls=20,
    docker_tries=3,
    submits=24,
    cancel_tries=1,
    log_lines=20,
    list_jobs=2_000,
    list_requests=5,
    ticks=3,
    timeout=120,
    keep_up=True,
)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Bench:
    def __init__(self, plan: Plan, tmp: Path, only: set[str] | None, sandbox: str = "on") -> None:
        self.plan, self.tmp, self.only = plan, tmp, only
        #: Where the stacks run function steps' code (``JOBSYS_SANDBOX``).
        self.sandbox = sandbox
        self.procs = Processes(tmp)
        self.rows: list[Row] = []
        self.started = time.monotonic()
        self.pg: JobsysStack | None = None
        self.pg_missing = ""

    def wanted(self, group: str) -> bool:
        return self.only is None or group in self.only

    def measure(self, group: str, what: Callable[[], Row | list[Row]], fallback: Row) -> None:
        """Run one row group; an exception becomes an ERROR row (and exit 1), not
        the end of the run."""
        if not self.wanted(group):
            return
        started = time.monotonic()
        print(f"bench: {group} ...", file=sys.stderr, flush=True)
        try:
            got = what()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            traceback.print_exc()
            fallback.status, fallback.note = ERROR, f"{type(exc).__name__}: {exc}"[:300]
            got = fallback
        rows = got if isinstance(got, list) else [got]
        self.rows += rows
        print(
            f"bench: {group} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True
        )

    def run(self) -> None:
        p = self.plan
        redis_url = start_redis(self.procs, self.tmp)
        sqlite = JobsysStack(
            "sqlite",
            self.procs,
            f"sqlite:///{self.tmp / 'jobsys.db'}",
            f"{redis_url}/0",
            self.tmp,
            sandbox=self.sandbox,
        )
        sqlite.launch()
        raw = RawWorker(self.procs, f"{redis_url}/3", self.tmp, keep=p.keep_up)
        if p.keep_up:  # up for the whole quick run, idle while jobsys is measured
            raw.launch()
        self.pg = self.pg_stack(redis_url) if p.keep_up and self.wanted("throughput") else None
        if self.pg is not None:
            self.pg.launch(queues=("python",))
        sqlite.ready()
        if self.pg is not None:
            self.pg.ready()
        if p.keep_up:
            raw.ready()
        print(f"bench: stack up after {time.monotonic() - self.started:.1f} s", file=sys.stderr)
        *small, (big_n, big_target) = p.maps
        for n, target in small:
            self.measure(
                f"map-{n}",
                lambda n=n, target=target: maps.map_row(sqlite, raw, n, p.reps, target, p.timeout),
                Row(f"map {n:,} no-op items", "s", target),
            )
        self.measure(
            "map-large",
            lambda: maps.large_map_rows(
                sqlite, raw, big_n, p.reps, big_target, p.timeout, p.memory_limit_mib
            ),
            Row(f"map {big_n:,} no-op items", "s", big_target),
        )
        self.measure(
            "cpu",
            lambda: maps.cpu_row(sqlite, p.cpu_items, p.reps, p.timeout),
            Row(f"map {p.cpu_items:,} x 5 ms CPU vs ideal", "s", 1.111),
        )
        self.measure(
            "one-call",
            lambda: calls.one_call_rows(sqlite, raw, p.calls, p.reps, 60),
            Row("one call", "ms", 4.0),
        )
        self.throughput(sqlite, raw, redis_url)
        why = docker_image_ready(docker_steps.IMAGE, REPO)
        for group, name, fn in (
            (
                "docker",
                "docker step busybox true",
                lambda: docker_steps.docker_step_row(sqlite, p.docker_tries),
            ),
            (
                "cancel",
                "cancel running docker step",
                lambda: docker_steps.cancel_row(sqlite, p.cancel_tries),
            ),
            (
                "logs",
                "log line to SSE reader p95",
                lambda: docker_steps.log_row(sqlite, p.log_lines, p.reps),
            ),
        ):
            if why is None:
                self.measure(group, fn, Row(name, "s", 1.0))
            elif self.wanted(group):
                self.rows.append(Row.skipped(name, "s", 1.0, why))
        self.measure(
            "schedule",
            lambda: schedule_lateness.schedule_row(sqlite, raw, p.ticks, p.reps),
            Row("schedule tick to task done", "ms", 2.0),
        )
        # Last: the seeded jobs would make every other row's database larger.
        self.measure(
            "job-list",
            lambda: job_list.list_rows(sqlite, p.list_jobs, p.list_requests, p.reps),
            Row(f"job list {p.list_jobs:,} jobs p95", "ms", 1.0),
        )

    def pg_stack(self, redis_url: str) -> JobsysStack | None:
        """The PostgreSQL stack (not started), or None with ``pg_missing`` saying why."""
        url, self.pg_missing = postgres_url()
        if url is None:
            return None
        return JobsysStack(
            "postgresql", self.procs, url, f"{redis_url}/1", self.tmp, sandbox=self.sandbox
        )

    def throughput(self, sqlite: JobsysStack, raw: RawWorker, redis_url: str) -> None:
        p = self.plan
        if not self.wanted("throughput"):
            return
        base: list[float] = []

        def raw_side() -> list[Row]:
            with raw.measuring() as app:
                base.extend(calls.raw_rates(app, p.submits, p.reps, p.timeout))
            return []

        self.measure("throughput-raw", raw_side, Row("submit throughput, raw", "per_s", 2.0))
        if not base:
            return
        self.measure(
            "throughput-floor",
            lambda: self.floor(base),
            Row("submit throughput floor: bare Flask app", "per_s", 2.0),
        )
        self.measure(
            "throughput",
            lambda: calls.throughput_row("SQLite", base, sqlite, p.submits, p.reps, p.timeout),
            Row("submit throughput, SQLite", "per_s", 2.0),
        )
        name = "submit throughput, PostgreSQL"
        pg = self.pg or self.pg_stack(redis_url)
        if pg is None:
            self.rows.append(Row.skipped(name, "per_s", 2.0, self.pg_missing))
            return

        def pg_side() -> Row:
            # Its web app and python worker, on their own Redis database; in the
            # full run up for this row only.
            if self.pg is not None:  # up since the start (quick run); stopped with the rest
                return calls.throughput_row("PostgreSQL", base, pg, p.submits, p.reps, p.timeout)
            pg.start(queues=("python",))
            try:
                return calls.throughput_row("PostgreSQL", base, pg, p.submits, p.reps, p.timeout)
            finally:
                pg.stop()

        self.measure("throughput", pg_side, Row(name, "per_s", 2.0))

    def floor(self, base: list[float]) -> Row:
        """The bare app's row: its gunicorn up for this row only."""
        port = free_port()
        name = "bare-web"
        self.procs.spawn(
            name, web_command(f"127.0.0.1:{port}", "bench.bare_app:app"), dict(os.environ), REPO
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            self.procs.check(name)
            try:
                return httpx.get(f"{url}/", timeout=2).status_code == 404
            except httpx.TransportError:
                return False

        try:
            wait_until(up, 60, "the bare Flask app")
            return calls.floor_row(base, url, self.plan.submits, self.plan.reps)
        finally:
            self.procs.stop(name)


GROUPS = (
    "map-<n>, map-large, cpu, one-call, throughput-raw, throughput-floor, throughput, docker, "
    "cancel, logs, schedule, job-list"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small run CI does (< 1 min)")
    parser.add_argument("--json", type=Path, help="where to write the rows as JSON")
    parser.add_argument("--only", action="append", help=f"only these groups: {GROUPS}")
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    parser.add_argument(
        "--sandbox",
        choices=("on", "off"),
        default="on",
        help="run function steps in the sandbox (on, the default, as shipped) or not",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    out = args.json or (
        REPO / ".jobsys" / "bench-quick.json" if args.quick else REPO / "bench" / "results.json"
    )
    only = {g for item in args.only for g in item.split(",")} if args.only else None
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="jobsys-bench-"))
    bench = Bench(plan, tmp, only, sandbox=args.sandbox)
    started = time.monotonic()
    code = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping what it started", file=sys.stderr)
        code = 130
    except Exception:
        traceback.print_exc()
        print(f"bench: could not set up; logs in {tmp}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the stop
        bench.procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cores = os.cpu_count() or 1
    if bench.rows:
        print(table(bench.rows, cores))
        if code != 130:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, bench.rows, cores)
            print(f"(wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out})")
    print(f"bench: {time.monotonic() - started:.0f} s in all", file=sys.stderr)
    if code == 0 and any(r.result == ERROR for r in bench.rows):
        code = 1
    if code == 0 and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif code:
        print(f"bench: the processes' logs are in {tmp}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
