"""make bench: the jobs list with 100,000 jobs in the database.

Seeds 100,000 finished and running jobs (one step each) into the live stack's
SQLite database, then times ``GET /api/jobs`` with each filter through the
web app (HTTP, auth, JSON, 50 jobs with their steps). Baseline: the same page
query run straight on the database (no HTTP, no JSON). Target: under 300 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert

from bench.stack import bench_stack
from jobsys.service.job_list import JobFilter, page_query
from jobsys.store.models import Job, JobTag, Step

JOBS = 100_000
REPEATS = 15
OWNERS = ("ann", "bob", "cy", "dee", "eve")
STATUSES = ("completed", "completed", "completed", "failed", "cancelled", "running")
CASES = {
    "newest": {},
    "status=failed": {"status": "failed"},
    "owner=dee": {"owner": "dee"},
    "q=etl-4 (name prefix)": {"q": "etl-4"},
    "since 2 h ago": {"since": None},
    "tag=nightly": {"tag": "nightly"},
    "page 200": {"page": "200"},
}


def seed(engine: Engine, count: int = JOBS) -> datetime:
    """``count`` jobs five seconds apart up to now, one step each; every fourth
    tagged ``nightly``, every seventh ``team=data``. Also used by the PostgreSQL
    query-plan test."""
    now = datetime.now(UTC)
    for start in range(0, count, 10_000):
        jobs, steps, tags = [], [], []
        for i in range(start, min(count, start + 10_000)):
            job_id = uuid.uuid4().hex
            created = now - timedelta(seconds=(count - i) * 5)
            status = STATUSES[i % len(STATUSES)]
            labels = [tag for tag, every in (("nightly", 4), ("team=data", 7)) if i % every == 0]
            tags += [{"job_id": job_id, "tag": t, "created_at": created} for t in labels]
            jobs.append(
                {
                    "id": job_id,
                    "name": f"etl-{i}" if i % 3 else f"report-{i}",
                    "status": status,
                    "owner": OWNERS[i % len(OWNERS)],
                    "spec": {"name": "x", "steps": [], "tags": labels},
                    "created_at": created,
                    "finished_at": None if status == "running" else created + timedelta(seconds=3),
                }
            )
            steps.append(
                {
                    "id": uuid.uuid4().hex,
                    "job_id": job_id,
                    "position": 0,
                    "kind": "docker",
                    "status": status,
                    "spec": {"image": "jobsys/busybox:local", "command": ["true"]},
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(Job), jobs)
            conn.execute(insert(Step), steps)
            conn.execute(insert(JobTag), tags)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return now


def timed(fn) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    with bench_stack() as stack:
        engine = stack.ctx.sessions.kw["bind"]
        now = seed(engine)
        print(f"jobs list with {JOBS} jobs (SQLite), median of {REPEATS}")
        print(f"{'filter':<24} {'SQL ms':>8} {'API ms':>8} {'ratio':>6} {'matches':>8}")
        with stack.http("viewer") as http:
            for label, args in CASES.items():
                args = dict(args)
                if "since" in args:
                    args["since"] = (now - timedelta(hours=2)).isoformat()
                page = int(args.pop("page", "1"))
                query = page_query(JobFilter.parse(args), page, 50)

                def sql(query=query) -> None:
                    with engine.connect() as conn:
                        conn.execute(query).all()

                def api(args=args, page=page) -> None:
                    r = http.get("/api/jobs", params={**args, "page": page})
                    r.raise_for_status()

                base, ours = timed(sql), timed(api)
                total = http.get("/api/jobs", params={**args, "per_page": 1}).json()["total"]
                print(
                    f"{label:<24} {base * 1000:>8.1f} {ours * 1000:>8.1f} "
                    f"{ours / base:>6.1f} {total:>8}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
