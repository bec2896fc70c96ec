"""A worker killed with SIGKILL is shown as lost within 30 s (its heartbeats
stop); the others stay online."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from tests.support.live import LiveStack, wait_until

pytestmark = pytest.mark.integration


def test_a_killed_worker_is_shown_lost(stack: LiveStack) -> None:
    name = f"extra-{stack.name}"
    proc = stack.spawn(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jobsys.celery_app",
            "worker",
            "-Q",
            "python",
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            "-l",
            "INFO",
        ],
    )

    def state_of(prefix: str) -> str | None:
        with stack.client("viewer") as c:
            for w in c.workers():
                if w["name"].startswith(prefix):
                    return str(w["state"])
        return None

    wait_until(lambda: state_of(f"{name}@") == "online", 60, "the extra worker online")
    with stack.client("viewer") as c:
        extra = next(w for w in c.workers() if w["name"].startswith(f"{name}@"))
        main = next(w for w in c.workers() if w["name"].startswith(f"it-{stack.name}@"))
    assert (extra["queues"], extra["concurrency"]) == (["python"], 1)
    assert (main["queues"], main["concurrency"]) == (["docker", "python"], 4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    wait_until(lambda: state_of(f"{name}@") == "lost", 30, "the killed worker shown lost")
    assert time.monotonic() - killed < 30
    assert state_of(f"it-{stack.name}@") == "online"
    del stack.processes[name]
