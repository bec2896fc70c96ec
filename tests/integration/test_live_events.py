"""Live events of function steps on the live stack: print output tagged with
its item range reaches a follower while the job runs."""

from __future__ import annotations

import time

import pytest

from tests.live import LiveStack

pytestmark = pytest.mark.integration


def slow_and_chatty(x: int) -> int:
    print(f"working on {x}")
    time.sleep(0.5)
    return x * 10


def test_function_prints_stream_live_with_their_item_range(stack: LiveStack) -> None:
    with stack.client() as c:
        job = c.map(slow_and_chatty, range(4), chunk_size=2)
        seen = []
        for event in job.events():
            if event["event"] == "log":
                if not seen:
                    status_at_first_line = c.job(job.id).status
                seen.append(event["data"]["line"])
        assert status_at_first_line == "running"
        assert sorted(seen) == [
            "[items 0-1] working on 0",
            "[items 0-1] working on 1",
            "[items 2-3] working on 2",
            "[items 2-3] working on 3",
        ]
        assert job.wait(timeout=30).results() == [0, 10, 20, 30]
