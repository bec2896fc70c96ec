"""Cancelling running Docker steps on the real engine, and the orphan reaper."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from jobsys import StateError
from tests.support.docker import containers_of, finished, step, submit
from tests.support.live import LiveStack, wait_until
from tests.support.services import BUSYBOX_IMAGE

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def test_cancel_stops_the_container_and_later_steps(stack: LiveStack) -> None:
    job_id = submit(stack, step("echo up; sleep 60", stop_grace_s=1), step("echo never"))
    wait_until(lambda: containers_of(job_id), 30, "the container to start")
    with stack.client("operator") as c:
        started = time.monotonic()
        job = c.job(job_id).cancel()
        assert job.status == "cancelled" and job.error == "cancelled by test-operator"
        wait_until(lambda: not containers_of(job_id), 15, "the container to go")
        gone_after = time.monotonic() - started
    # sh as PID 1 ignores SIGTERM: the grace period (1 s) passes, then SIGKILL.
    assert gone_after < 5
    job = finished(stack, job_id)
    assert job["status"] == "cancelled"
    assert [s["status"] for s in job["steps"]] == ["cancelled", "cancelled"]
    with stack.http() as http:
        tasks = http.get(f"/api/jobs/{job_id}/tasks").json()["tasks"]
        assert {t["step_id"] for t in tasks} == {job["steps"][0]["id"]}
        r = http.post(f"/api/jobs/{job_id}/cancel")
        assert r.status_code == 409
    with stack.client() as c, pytest.raises(StateError):
        c.cancel(job_id)


def test_reaper_removes_containers_of_ended_jobs(stack: LiveStack) -> None:
    # A container left behind by a worker that died: labelled with a job that has ended.
    job_id = submit(stack, step("true"))
    assert finished(stack, job_id)["status"] == "completed"
    # And one of a job this database does not know: another jobsys on the same engine.
    foreign = f"other-{uuid.uuid4().hex}"
    for labelled in (job_id, foreign):
        label = f"jobsys.job={labelled}"
        run = ["docker", "run", "-d", "--network", "none", "--label", label, BUSYBOX_IMAGE]
        subprocess.run([*run, "sleep", "60"], check=True, capture_output=True)
    assert containers_of(job_id) and containers_of(foreign)
    ran = stack.ctx.dispatcher.app.send_task("jobsys.reap_orphans", queue="docker")
    assert ran.get(timeout=30) >= 1
    assert containers_of(job_id) == []
    left = containers_of(foreign)
    assert left, "the reaper removed a container of a job it does not know"
    subprocess.run(["docker", "rm", "-f", *left], check=True, capture_output=True)
