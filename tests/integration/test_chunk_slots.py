"""A map is cut into as many chunks as the running python workers have slots:
their ``-c``, as their heartbeats report it, read by the web process at submit."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.support.live import LiveStack, private_stack, wait_until, worker_argv

pytestmark = pytest.mark.integration

#: Fewer than one chunk's most (2,500): a chunk per slot.
ITEMS = list(range(1200))


@pytest.fixture
def slot_stack(tmp_path: Path) -> Iterator[LiveStack]:
    # slots_cache_s=0: the web process reads the heartbeats at every submit.
    with closing(private_stack(tmp_path, "slots", slots_cache_s=0.0)) as stacks:
        for stack, _server in stacks:
            yield stack


def chunks_of_a_map(stack: LiveStack) -> int:
    spec = {"steps": [{"kind": "function", "function": "math:sqrt", "items": ITEMS}]}
    with stack.client() as client:
        job = client.submit_spec(spec).wait(timeout=120)
        assert job.status == "completed"
        return len(job.tasks())


def python_slots(stack: LiveStack) -> int:
    beats = stack.ctx.dispatcher.heartbeats().values()
    return sum(b.get("concurrency") or 0 for b in beats if "python" in (b.get("queues") or ()))


def test_a_maps_chunk_count_follows_the_workers_concurrency(slot_stack: LiveStack) -> None:
    stack = slot_stack
    assert chunks_of_a_map(stack) == 4  # the stack's worker: -c 4
    extra = stack.spawn("extra", worker_argv("extra-slots@%h", queues="python", concurrency=3))
    try:
        wait_until(lambda: python_slots(stack) == 7, 60, "the extra worker's heartbeat")
        assert chunks_of_a_map(stack) == 7  # 4 + 3 slots, 172 items a chunk
    finally:
        os.killpg(extra.pid, signal.SIGKILL)
        extra.wait()
        del stack.processes["extra"]
