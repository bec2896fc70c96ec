"""A worker killed with SIGKILL is shown as lost within 15 s of the kill (its
heartbeats stop; the README promises lost within 10 s of the last one); the
others stay online.

Workers send Celery's heartbeat every 2 s (Celery's default; jobsys and this
test start workers without ``--heartbeat-interval``), and ``LOST_AFTER_S`` is
10 s, so the killed worker turns lost 8-10 s after the kill, plus one poll of
the API. A heartbeat delayed by a loaded machine only makes its last one older,
so lost sooner; a threshold of 30 s would show it lost 28 s after the kill."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tests.support.live import LiveStack, wait_until, worker_argv

pytestmark = pytest.mark.integration


# Heartbeats live in Redis, whatever the database: one stack is enough.
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_killed_worker_is_shown_lost(stack: LiveStack) -> None:
    name = f"extra{uuid.uuid4().hex[:6]}-{stack.name}"  # no earlier run's heartbeat
    proc = stack.spawn(name, worker_argv(f"{name}@%h", queues="python", concurrency=1))

    def state_of(prefix: str) -> str | None:
        with stack.client("viewer") as c:
            for w in c.workers():
                if w["name"].startswith(prefix):
                    return str(w["state"])
        return None

    try:
        wait_until(lambda: state_of(f"{name}@") == "online", 60, "the extra worker online")
        with stack.client("viewer") as c:
            extra = next(w for w in c.workers() if w["name"].startswith(f"{name}@"))
            main = next(w for w in c.workers() if w["name"].startswith(f"it-{stack.name}@"))
        assert (extra["queues"], extra["concurrency"]) == (["python"], 1)
        assert (main["queues"], main["concurrency"]) == (["docker", "python"], 4)
        assert state_of(f"{name}@") == "online"  # still, just before the kill
        killed = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:  # on a failure before the kill too: it would take the stack's python tasks
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wait_until(lambda: state_of(f"{name}@") == "lost", 15, "the killed worker shown lost")
    assert time.monotonic() - killed < 15
    assert state_of(f"it-{stack.name}@") == "online"
    del stack.processes[name]
