"""Redis stays bounded: after every kind of work jobsys does (function jobs that
pass and fail, Docker jobs, a cancel, a rerun, a resume, Celery's remote
control), every key that was made per job or per task carries a TTL, and the
keys without one are the fixed, capped set in ``redis_bounds.PERMANENT``.

With short TTLs (as the soak uses), the per-job keys are gone once they pass
and Redis is back near where it started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.drills import Drill, drill_stack
from tests.support.live import CELERY, run_in, wait_until
from tests.support.redis_bounds import census, check_bounded
from tests.support.services import BUSYBOX_IMAGE, require_docker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TTL_S = 8


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    yield from drill_stack(tmp_path, "memory", result_ttl_s=TTL_S, events_ttl_s=TTL_S)


def test_every_per_job_key_expires(drill: Drill) -> None:
    require_docker()
    stack = drill.stack
    client = redis.Redis.from_url(drill.redis.url)
    before = census(client)
    with stack.client("admin") as c:
        jobs = [c.map(lambda x: 10 // x, [1, 2, 0, 5], chunk_size=1) for _ in range(4)]
        jobs += [c.map(abs, range(50), chunk_size=7, tolerate_failures=True) for _ in range(2)]
        jobs += [c.run_docker(BUSYBOX_IMAGE, ["sh", "-c", "echo hi"]) for _ in range(2)]
        long = c.run_docker(BUSYBOX_IMAGE, ["sleep", "30"])
        for job in jobs:
            job.wait(90)
        wait_until(lambda: long.refresh().status == "running", 30, "the long job to start")
        long.cancel()
        jobs[0].rerun().wait(60)
        jobs[1].resume().wait(60)
    control = run_in(stack, *CELERY, "inspect", "active")
    assert control.returncode == 0, control.stderr
    busy = check_bounded(client, workers_seen=1)
    assert busy.families.get("celery-task-meta-*", 0) > 0  # results were kept, with a TTL
    assert busy.families.get("jobsys:events:*", 0) >= len(jobs)

    # Once the TTLs pass, what the jobs left behind is gone.
    wait_until(
        lambda: (
            not any(
                census(client).families.get(f, 0)
                for f in ("celery-task-meta-*", "celery-taskset-meta-*", "jobsys:events:*")
            )
        ),
        TTL_S + 20,
        "per-job keys to expire",
    )
    after = check_bounded(client, workers_seen=1)
    print(f"\nbefore: {before.describe()}\nbusy:   {busy.describe()}\nafter:  {after.describe()}")
    # Celery keeps each chord's "done" claim 5 minutes (its own fixed TTL), then drops it.
    claims = [k for k in client.scan_iter("celery-taskset-meta-*.c")]
    assert all(0 < client.ttl(k) <= 300 for k in claims)
    others = after.keys - len(claims)
    assert others <= before.keys + 12, after.describe()  # queues, bindings, heartbeats
