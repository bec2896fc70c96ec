"""Rerun and resume on real workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live import LiveStack

pytestmark = pytest.mark.integration


def test_resume_reruns_only_the_failed_items(stack: LiveStack, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    calls = tmp_path / "calls"
    calls.mkdir()

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
