"""Cancelling a running function step: the processes running its chunks (the
sandboxed ones, or the pool processes without a sandbox) are killed, no item
finishes after the cancel, and the pending chunks never start.

Each item names its process (``/proc/<pid>/comm``, seen from the host, in or
out of the sandbox's PID namespace) and writes marker files the test reads:
``started-<i>`` (holding that name) when it begins, ``finished-<i>`` after a
long sleep. The task rows cannot show any of this: the cancel itself marks them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jobsys.broker.canvas import PYTHON_QUEUE
from tests.support.live import LiveStack, wait_until

pytestmark = pytest.mark.integration

#: Far longer than the test waits: an item that finishes was not stopped.
LONG_S = 30
#: Twice the stack worker's concurrency (-c 4), so chunks are pending at the cancel.
ITEMS = 8


def _running(name: str) -> bool:
    """Whether a live process (not a zombie awaiting its parent) has this name."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text().strip() != name:
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
    return False


def _markers(folder: Path, kind: str) -> dict[int, str]:
    return {int(p.name.split("-")[1]): p.read_text() for p in folder.glob(f"{kind}-*")}


def _none_started(folder: Path, pending: set[int]) -> None:
    wrongly = sorted(set(_markers(folder, "started")) & pending)
    assert not wrongly, f"pending chunks of items {wrongly} started after the cancel"


def test_cancel_a_running_chord(stack: LiveStack, shared_path: Path) -> None:
    folder = str(shared_path)

    tag = f"{os.getpid() % 100000}"

    def long_item(i: int) -> int:
        import ctypes
        import time
        from pathlib import Path

        name = f"chunk{i}-{tag}"
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
        here = Path(folder)
        (here / f".started-{i}").write_text(name)
        (here / f".started-{i}").rename(here / f"started-{i}")  # never read half-written
        time.sleep(LONG_S)
        (here / f"finished-{i}").write_text("")
        return i

    with stack.client() as c:
        job = c.map(long_item, range(ITEMS), chunk_size=1)
        wait_until(lambda: len(_markers(shared_path, "started")) >= 2, 60, "two items to start")
        job.cancel()
        assert job.status == "cancelled"
        # Which chunks were pending when the cancel committed: it ends those
        # at once (finished_at), and leaves the running ones to their own end.
        tasks = job.tasks()
        item_of = {t["id"]: t["items"][0] for t in tasks}
        pending = {t["items"][0] for t in tasks if t["finished_at"] is not None}
        assert pending, "every chunk had started: nothing left to prove about pending ones"

        started = _markers(shared_path, "started")
        assert started, "no item had started before the cancel"
        _none_started(shared_path, pending)
        names = sorted(started.values())
        # The revoke ends the process running each started chunk.
        wait_until(
            lambda: not any(_running(name) for name in names),
            10,
            f"the processes {names} of the running chunks to stop",
        )
        # Their processes are gone, so they can never write "finished".
        assert not _markers(shared_path, "finished")

        # The pool has free processes again: the worker takes the pending
        # chunks' messages and must drop them, not run them.
        inflight = stack.ctx.dispatcher.inflight
        deadline = time.monotonic() + 30
        while True:
            _none_started(shared_path, pending)
            queued = inflight.queued_task_ids(PYTHON_QUEUE) or set()
            held = (queued | inflight.delivered_task_ids()) & set(item_of)
            if not held:
                break
            assert time.monotonic() < deadline, (
                f"the worker never took (or never finished with) the job's chunks "
                f"{sorted(item_of[t] for t in held)}: are they running?"
            )
            time.sleep(0.2)
        time.sleep(0.5)  # a chunk that slipped through writes its marker at once
        _none_started(shared_path, pending)
        assert not _markers(shared_path, "finished")

        job.refresh()
        assert job.status == "cancelled"
        assert job.data["steps"][0]["status"] == "cancelled"  # the gather never completed it
        assert {t["state"] for t in job.tasks()} == {"cancelled"}


def test_cancel_a_queued_job_before_any_worker_sees_it(stack: LiveStack) -> None:
    job = stack.unpublished_job(
        {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1]}]}
    )
    with stack.client() as c:
        assert c.cancel(job.id).status == "cancelled"
    from jobsys import service

    assert not service.dispatch_step(stack.ctx, job.steps[0].id)  # never published now
