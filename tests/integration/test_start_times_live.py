"""A start time on the real stack: the web app (gunicorn) stores a job held
until a moment, beat (a real ``celery beat``) is stopped and started again
while it waits, and the job starts within a second or so of its time and runs
on the real worker. Nothing reaches the broker before that: the held job
survives a restart of beat because it lives in the database, not in Celery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobsys import service
from jobsys.auth import SYSTEM
from tests.support.live import CELERY, LiveStack, private_stack, wait_until

pytestmark = pytest.mark.slow
SPEC = {"name": "held", "steps": [{"kind": "function", "function": "math:sqrt", "items": [9]}]}


@pytest.fixture
def beat_stack(tmp_path: Path) -> Iterator[LiveStack]:
    with closing(private_stack(tmp_path, "start-times", beat_lock_ttl_s=2.0)) as stacks:
        for stack, _server in stacks:
            yield stack


def start_beat(stack: LiveStack, name: str) -> None:
    stack.spawn(name, [*CELERY, "beat", "-l", "INFO", "-s", str(stack.log_dir / f"{name}.db")])
    wait_until(lambda: "now the leader" in stack.log(name), 60, f"{name} to lead")


def test_a_held_job_starts_at_its_time_after_a_beat_restart(beat_stack: LiveStack) -> None:
    stack = beat_stack
    start_beat(stack, "beat-1")
    at = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    with stack.client() as c:
        job = c.submit_spec({**SPEC, "not_before": at.isoformat()})
        assert job.status == "queued" and job.data["waiting"]["reason"] == "not_before"
    stack.processes["beat-1"].terminate()  # beat's own shutdown hands its lock back
    stack.processes["beat-1"].wait(timeout=30)
    time.sleep(2)
    held = service.get_job(stack.ctx, SYSTEM, job.id)
    assert held.status == "queued" and held.waiting is not None
    assert service.job_tasks(stack.ctx, SYSTEM, job.id) == []  # nothing was sent
    start_beat(stack, "beat-2")  # a new beat, which never saw the job submitted

    def started() -> bool:
        return service.get_job(stack.ctx, SYSTEM, job.id).status != "queued"

    wait_until(started, 40, "the held job to start")
    began = datetime.now(UTC)
    assert began >= at
    assert (began - at).total_seconds() < 3, f"started {began - at} after its time"
    with stack.client() as c:
        done = c.job(job.id).wait(timeout=60)
    assert done.status == "completed" and done.results() == [3.0]
    assert done.data["waiting"] is None
    assert f"job {job.id} released at its start time" in stack.log("beat-2")
