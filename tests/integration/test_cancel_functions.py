"""Cancelling a running function step: the chord's remaining chunks never run."""

from __future__ import annotations

import time

import pytest

from tests.support.live import LiveStack, wait_until

pytestmark = pytest.mark.integration


def test_cancel_a_running_chord(stack: LiveStack) -> None:
    def slow(x: int) -> int:
        import time

        time.sleep(0.3)
        return x

    with stack.client() as c:
        job = c.map(slow, range(60), chunk_size=1)

        def completed() -> int:
            return sum(t["state"] == "completed" for t in job.tasks())

        wait_until(lambda: completed() >= 2, 30, "the first chunks")
        job.cancel()
        assert job.status == "cancelled"
        time.sleep(1.5)  # let revokes land and anything still running report
        settled = completed()
        time.sleep(1.5)
        assert completed() == settled < 60  # nothing else ran after the cancel
        job.refresh()
        assert job.status == "cancelled"
        assert job.data["steps"][0]["status"] == "cancelled"  # the gather never completed it
        states = {t["state"] for t in job.tasks()}
        assert states <= {"completed", "cancelled"}


def test_cancel_a_queued_job_before_any_worker_sees_it(stack: LiveStack) -> None:
    job = stack.unpublished_job(
        {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1]}]}
    )
    with stack.client() as c:
        assert c.cancel(job.id).status == "cancelled"
    from jobsys import service

    assert not service.dispatch_step(stack.ctx, job.steps[0].id)  # never published now
