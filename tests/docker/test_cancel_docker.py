"""Cancelling running Docker steps on the real engine, and the orphan reaper.

A cancel stops the container the way ``docker stop`` does: SIGTERM, then
SIGKILL once the step's ``stop_grace_s`` has passed. The containers here trap
SIGTERM (sh as PID 1 would otherwise ignore it), so what they print says which
signal came first, and their exit code (0 from the trap, 137 from SIGKILL)
says which one ended them."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import pytest

from jobsys import StateError
from jobsys.celery_app import make_celery
from tests.support.docker import containers_of, finished, lines, step, submit
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


#: Installs the trap before saying "up", so a SIGTERM after "up" always runs it.
#: (A trap runs once the foreground ``sleep`` returns: within 0.2 s.)
EXITS_ON_TERM = "trap 'echo got-TERM; exit 0' TERM; echo up; while true; do sleep 0.2; done"
IGNORES_TERM = "trap 'echo ignored-TERM' TERM; echo up; while true; do sleep 0.2; done"


def running_container(job_id: str) -> str:
    """The id of the job's container once it has said "up" (its trap is set)."""

    def up() -> str | None:
        (container,) = containers_of(job_id)
        out = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        return container if "up" in out.stdout.split() else None

    return str(wait_until(up, 60, f"the container of job {job_id} to say up"))


def cancel_and_time_until_gone(stack: LiveStack, job_id: str, timeout: float) -> float:
    """Cancel the job; seconds from just before the cancel to its container being gone."""
    running_container(job_id)
    with stack.client("operator") as c:
        started = time.monotonic()
        assert c.job(job_id).cancel().status == "cancelled"
    wait_until(lambda: not containers_of(job_id), timeout, "the container to go")
    return time.monotonic() - started


def container_exit(stack: LiveStack, job_id: str) -> int:
    """The stopped container's exit code, from the line its step ended with (a
    cancelled step keeps no exit code of its own: the cancel ended it first)."""
    (ended,) = [line for line in lines(stack, job_id, "system") if "step ended" in line]
    found = re.search(r"container stopped \(exit (\d+)\)$", ended)
    assert found, ended
    return int(found[1])


def test_cancel_sends_sigterm_first(stack: LiveStack) -> None:
    """The container's own TERM handler runs and ends it (exit 0), long before
    the SIGKILL a 30 s grace would bring; its line is in the stored log."""
    job_id = submit(stack, step(EXITS_ON_TERM, timeout_s=120, stop_grace_s=30))
    gone_after = cancel_and_time_until_gone(stack, job_id, 25)
    assert gone_after < 25  # the trap ended it; a SIGKILL would have come after 30 s
    job = finished(stack, job_id)
    assert job["status"] == "cancelled"
    assert job["steps"][0]["status"] == "cancelled"
    assert lines(stack, job_id, "stdout") == ["up", "got-TERM"]
    assert container_exit(stack, job_id) == 0  # 137 had it been SIGKILL


def test_a_container_ignoring_sigterm_is_killed_after_the_grace(stack: LiveStack) -> None:
    """SIGTERM first (the trap prints), then SIGKILL no sooner than the grace
    period after the cancel (exit 137)."""
    grace = 3
    job_id = submit(stack, step(IGNORES_TERM, timeout_s=120, stop_grace_s=grace))
    gone_after = cancel_and_time_until_gone(stack, job_id, grace + 30)
    assert grace <= gone_after < grace + 15
    assert finished(stack, job_id)["status"] == "cancelled"
    assert lines(stack, job_id, "stdout") == ["up", "ignored-TERM"]
    assert container_exit(stack, job_id) == 137  # SIGKILL


@pytest.mark.slow
def test_the_default_grace_is_ten_seconds(stack: LiveStack) -> None:
    """A step that sets no ``stop_grace_s`` gets 10 s between SIGTERM and SIGKILL."""
    job_id = submit(stack, step(IGNORES_TERM, timeout_s=120))
    gone_after = cancel_and_time_until_gone(stack, job_id, 60)
    assert 10 <= gone_after < 10 + 20
    assert finished(stack, job_id)["status"] == "cancelled"
    assert lines(stack, job_id, "stdout") == ["up", "ignored-TERM"]
    assert container_exit(stack, job_id) == 137


def test_reaper_removes_containers_of_ended_jobs(stack: LiveStack) -> None:
    # A container left behind by a worker that died: labelled with a job that has ended.
    job_id = submit(stack, step("true"))
    assert finished(stack, job_id)["status"] == "completed"
    # And one of a job this database does not know: another jobsys on the same engine.
    foreign = f"other-{uuid.uuid4().hex}"
    try:
        for labelled in (job_id, foreign):
            label = f"jobsys.job={labelled}"
            run = ["docker", "run", "-d", "--network", "none", "--label", label, BUSYBOX_IMAGE]
            subprocess.run([*run, "sleep", "60"], check=True, capture_output=True)
        assert containers_of(job_id) and containers_of(foreign)
        # The stack's own app only publishes (it follows no results): ask with one that does.
        ran = make_celery(stack.settings).send_task("jobsys.reap_orphans", queue="docker")
        assert ran.get(timeout=30) >= 1
        assert containers_of(job_id) == []
        assert containers_of(foreign), "the reaper removed a container of a job it does not know"
    finally:  # nothing of ours left on the engine, whatever failed
        left = containers_of(job_id) + containers_of(foreign)
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
