"""The jobs list with 100,000 jobs in the database: ``GET /api/jobs`` with
each filter through the web app (HTTP, auth, JSON, 50 jobs with their steps),
p95 of each repetition's requests against an absolute 25 ms.

``seed`` writes the jobs straight into the database (setup, not measured);
the PostgreSQL query-plan test uses it too.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert

from bench.env import JobsysStack
from bench.results import Row, percentile
from jobsys.store.models import Job, JobTag, Step

JOBS = 100_000
#: A page of jobs within this, p95, for every filter.
LIMIT_MS = 25.0
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


def list_rows(stack: JobsysStack, jobs: int, requests: int, reps: int) -> list[Row]:
    """One row per filter; each rep is ``requests`` calls, its figure their p95."""
    assert stack.live is not None
    engine = stack.live.ctx.sessions.kw["bind"]
    now = seed(engine, jobs)
    rows = []
    with stack.http("viewer") as http:
        for label, args in CASES.items():
            params: dict[str, object] = dict(args)
            if "since" in params:
                params["since"] = (now - timedelta(hours=2)).isoformat()
            params.setdefault("page", "1")
            if int(str(params["page"])) * 50 > jobs:  # a short list has no page 200
                params["page"] = str(max(1, jobs // 100))

            def get(params: dict[str, object] = params) -> float:
                started = time.perf_counter()
                r = http.get("/api/jobs", params=params)
                took = (time.perf_counter() - started) * 1000
                r.raise_for_status()
                return took

            get()  # warm the page cache and the connection
            ours = [percentile([get() for _ in range(requests)], 95) for _ in range(reps)]
            total = http.get("/api/jobs", params={**params, "per_page": 1}).json()["total"]
            rows.append(
                Row.absolute_limit(
                    f"job list {jobs:,} jobs p95, {label}",
                    "ms",
                    LIMIT_MS,
                    ours,
                    f"absolute: PASS when p95 < {LIMIT_MS:.0f} ms; GET /api/jobs, "
                    f"{requests} requests per rep, {total:,} matches",
                )
            )
    return rows
