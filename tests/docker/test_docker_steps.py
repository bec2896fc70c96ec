"""Docker steps on the real engine, submitted over HTTP to a live stack."""

from __future__ import annotations

import time

import pytest

from tests.support.docker import containers_of, finished, lines, step, submit
from tests.support.live import LiveStack, wait_until
from tests.support.services import BUSYBOX_IMAGE

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def gone(job_id: str) -> None:
    """The step's container goes: right after the step is reported, not before."""
    wait_until(lambda: not containers_of(job_id), 15, "the container to go")


def test_hello_runs_and_its_container_is_removed(stack: LiveStack) -> None:
    job_id = submit(stack, step("echo hi; echo oops >&2", env={"WHO": "x"}, retries=1))
    job = finished(stack, job_id)
    assert job["status"] == "completed", job["error"]
    assert job["steps"][0]["exit_code"] == 0 and job["steps"][0]["attempts"] == 1
    assert lines(stack, job_id, "stdout") == ["hi"]
    assert lines(stack, job_id, "stderr") == ["oops"]
    gone(job_id)
    with stack.http() as http:
        tail = http.get(f"/api/jobs/{job_id}/logs?tail=1").json()["logs"]
        assert len(tail) == 1
        tasks = http.get(f"/api/jobs/{job_id}/tasks").json()["tasks"]
        assert tasks[0]["state"] == "completed" and tasks[0]["worker"]


def test_container_is_isolated_and_limited(stack: LiveStack) -> None:
    script = (
        "ls /sys/class/net; echo WHO=$WHO; "
        "cat /sys/fs/cgroup/memory.max 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    )
    job_id = submit(stack, step(script, env={"WHO": "jobsys"}, mem_limit="64m", cpus=0.5))
    assert finished(stack, job_id)["status"] == "completed"
    out = lines(stack, job_id, "stdout")
    assert out[0] == "lo" and "WHO=jobsys" in out  # no network but loopback
    assert "67108864" in out  # 64 MiB
    assert any(line.split()[0] == "50000" for line in out)  # half of a 100 ms CPU period


def test_nonzero_exit_fails_after_retries_with_backoff(stack: LiveStack) -> None:
    job_id = submit(stack, step("echo try; exit 3", retries=2, retry_backoff_s=0.2))
    job = finished(stack, job_id)
    assert job["status"] == "failed"
    s = job["steps"][0]
    assert (s["attempts"], s["exit_code"]) == (3, 3)
    assert "StepFailed: container exited with code 3" in job["error"]
    out = lines(stack, job_id)
    assert out.count("try") == 3
    assert sum("retrying in" in line for line in out) == 2
    gone(job_id)


def test_timeout_kills_the_container(stack: LiveStack) -> None:
    started = time.monotonic()
    job_id = submit(stack, step("echo start; sleep 60; echo never", timeout_s=1))
    job = finished(stack, job_id)
    assert time.monotonic() - started < 20
    assert job["status"] == "failed" and "StepTimeout: timed out after 1 s" in job["error"]
    assert lines(stack, job_id, "stdout") == ["start"]
    gone(job_id)


def test_missing_image_fails_without_retrying(stack: LiveStack) -> None:
    job_id = submit(
        stack, {"kind": "docker", "image": "jobsys/not-here:1", "command": ["true"], "retries": 3}
    )
    job = finished(stack, job_id)
    assert job["status"] == "failed" and "ImageError" in job["error"]
    assert job["steps"][0]["attempts"] == 1


def test_a_command_that_cannot_start_fails_the_step(stack: LiveStack) -> None:
    job_id = submit(
        stack,
        {"kind": "docker", "image": BUSYBOX_IMAGE, "command": ["no-such-program"], "timeout_s": 30},
    )
    job = finished(stack, job_id)
    assert job["status"] == "failed" and "could not start" in job["error"]
    gone(job_id)


def test_steps_chain_in_order(stack: LiveStack) -> None:
    job_id = submit(
        stack,
        step("echo first"),
        step("echo second"),
        {"kind": "function", "function": "math:sqrt", "items": [9]},
    )
    job = finished(stack, job_id)
    assert job["status"] == "completed"
    first, second, third = job["steps"]
    assert first["finished_at"] <= second["started_at"]
    assert second["finished_at"] <= third["started_at"]
    assert lines(stack, job_id, "stdout") == ["first", "second"]
    with stack.client() as c:
        assert c.job(job_id).results() == [3.0]


def test_a_failed_step_stops_the_chain(stack: LiveStack) -> None:
    job_id = submit(stack, step("exit 1"), step("echo must not run"))
    job = finished(stack, job_id)
    assert job["status"] == "failed" and job["error"].startswith("step 1 failed")
    assert job["steps"][1]["status"] == "queued"
    with stack.http() as http:
        tasks = http.get(f"/api/jobs/{job_id}/tasks").json()["tasks"]
    assert {t["step_id"] for t in tasks} == {job["steps"][0]["id"]}
    assert "must not run" not in lines(stack, job_id)


def test_image_outside_the_allow_list_is_400(stack: LiveStack) -> None:
    with stack.http() as http:
        r = http.post(
            "/api/jobs",
            json={"steps": [{"kind": "docker", "image": "alpine:3", "command": ["true"]}]},
        )
        assert r.status_code == 400
        assert "not allowed" in r.json()["fields"]["steps[0].image"]
