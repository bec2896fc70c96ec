"""Rerun and resume on real workers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.stack import web_command
from jobsys.store.models import Job
from tests.support.auth import stack_bearer
from tests.support.live import LiveStack, free_port, wait_until

pytestmark = pytest.mark.integration


def test_resume_reruns_only_the_failed_items(stack: LiveStack, shared_path: Path) -> None:
    ready = shared_path / "ready"
    calls = shared_path / "calls"
    calls.mkdir()
    calls.chmod(0o777)  # the job's code writes here, as the sandbox's user

    def flaky(x: int) -> int:
        (calls / f"{x}-{len(list(calls.iterdir()))}").touch()
        if x % 5 == 0 and not ready.exists():
            raise RuntimeError("not yet")
        return x * 2

    with stack.client() as c:
        first = c.map(flaky, range(20), chunk_size=3).wait(timeout=60)
        assert first.status == "failed" and "4 of 20 items failed" in first.error
        ready.touch()
        before = len(list(calls.iterdir()))
        resumed = first.resume().wait(timeout=60)
        assert resumed.status == "completed", resumed.error
        assert resumed.data["rerun_of"] == first.id
        assert resumed.results() == [x * 2 for x in range(20)]
        assert len(list(calls.iterdir())) - before == 4  # only items 0, 5, 10, 15 ran again
        assert c.job(first.id).status == "failed"  # the original is kept unchanged

        again = first.rerun().wait(timeout=60)
        assert again.status == "completed" and again.data["rerun_of"] == first.id
        assert len(list(calls.iterdir())) - before == 24  # a rerun runs everything


def jobs(stack: LiveStack) -> int:
    with stack.ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(Job)) or 0


def test_a_narrowed_allow_list_refuses_rerun_resume_and_run_now(stack: LiveStack) -> None:
    """What an operator does: narrow JOBSYS_DOCKER_IMAGES and restart the web app.
    Old jobs and schedules stay, but nothing made from them runs the old image."""
    step = {"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}
    old = stack.unpublished_job({"name": "old-image", "steps": [step]})
    service.cancel_job(stack.ctx, SYSTEM, old.id)
    schedule = f"old-image-{stack.name}"
    service.create_schedule(
        stack.ctx,
        SYSTEM,
        {"name": schedule, "cron": "@yearly", "spec": {"name": "s", "steps": [step]}},
    )
    port = free_port()
    stack.spawn(
        "web-narrowed",
        web_command(f"127.0.0.1:{port}"),
        JOBSYS_DOCKER_IMAGES="registry.example/*",
    )
    narrowed = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{narrowed}/api/stats").status_code == 401, 30, "the web app")
    before = jobs(stack)
    headers = stack_bearer(stack, "developer")
    with httpx.Client(base_url=narrowed, headers=headers, timeout=30) as http:
        for path in (
            f"/api/jobs/{old.id}/rerun",
            f"/api/jobs/{old.id}/resume",
            f"/api/schedules/{schedule}/run-now",
        ):
            r = http.post(path)
            assert r.status_code == 400, (path, r.text)
            assert "steps[0].image" in r.json()["fields"], r.json()
    assert jobs(stack) == before  # each refusal created nothing
    # The web app with the wider list still reruns it: nothing else was refused.
    with stack.http() as http:
        assert http.post(f"/api/jobs/{old.id}/rerun").status_code == 202
