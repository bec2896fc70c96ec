"""Execution leases: at most one live run of a task, whatever the broker redelivers.

With ``acks_late`` on Redis, kombu hands an unacknowledged message to another
worker once its visibility timeout passes, even while the first worker still
runs it (celery/celery#5935). So each run holds a lease on its task id,
renewed by a thread every third of ``task_lease_ttl_s`` and released when
the run ends:

- a delivery that finds the lease held waits out one TTL: a dead holder's
  lease runs out and the delivery takes over; a live holder keeps renewing,
  and the delivery is dropped without running;
- the same thread keeps the run's own message hidden (its visibility clock
  reset), so a long step is not redelivered in the first place, and the
  visibility timeout can stay short enough to recover from a killed worker fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from jobsys.broker.inflight import InFlight
from jobsys.context import Context
from jobsys.errors import DispatchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: a worker, its process, and this one run of the task."""

    worker: str
    pid: int
    run: str

    def __str__(self) -> str:
        return f"{self.worker}|{self.pid}|{self.run}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        worker, _, rest = text.rpartition("|")
        worker, _, pid = worker.rpartition("|")
        try:
            return cls(worker, int(pid), rest)
        except ValueError:
            return None

    def is_dead_here(self, worker: str) -> bool:
        """True when this holder was a process of our own worker that is gone:
        a pool child killed mid-task, whose task Celery requeued at once."""
        if self.worker != worker:
            return False  # another machine: only its lease running out tells
        if self.pid == os.getpid():
            return True  # our pid, another run: the process before us had it
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class TaskLease:
    """The lease of one run of one task; see the module docstring."""

    def __init__(
        self, ctx: Context, task_id: str, *, worker: str, delivery_tag: str | None = None
    ) -> None:
        self.ctx = ctx
        self.task_id = task_id
        self.worker = worker
        self.delivery_tag = delivery_tag
        self.holder = Holder(worker, os.getpid(), uuid.uuid4().hex[:12])
        self.ttl_s = ctx.settings.task_lease_ttl_s
        #: Set if another run took the lease from under us (we stalled past the TTL).
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _inflight(self) -> InFlight:
        return self.ctx.dispatcher.inflight

    def acquire(self) -> bool:
        """Take the lease, waiting out a holder that may be dead; False when a live
        run holds it. With the broker unreachable the run goes ahead unleased: the
        message did arrive, and the renewal thread takes the lease once it can."""
        deadline = time.monotonic() + self.ttl_s * 4 / 3
        poll = min(0.25, self.ttl_s / 10)
        me = str(self.holder)
        # The first try also restarts our message's visibility clock (it started
        # when the worker prefetched it), in the same round trip.
        hide = self.delivery_tag
        while True:
            try:
                current = self._inflight.acquire_lease(self.task_id, me, self.ttl_s, hide=hide)
                hide = None
                if current is None:
                    break
                dead = Holder.parse(current)
                if (
                    dead is not None
                    and dead.is_dead_here(self.worker)
                    and self._inflight.take_over_lease(self.task_id, current, me, self.ttl_s)
                ):
                    log.info("task %s: took over the lease of dead run %s", self.task_id, current)
                    break
            except DispatchError as exc:
                log.warning("task %s runs without a lease for now: %s", self.task_id, exc)
                break
            if time.monotonic() >= deadline:
                log.warning(
                    "task %s: duplicate delivery dropped; run %s holds its lease and is alive",
                    self.task_id,
                    current,
                )
                return False
            time.sleep(poll)
        return True

    def _refresh(self) -> None:
        """One renewal: the lease, and our message's visibility clock."""
        if not self._inflight.renew_lease(self.task_id, str(self.holder), self.ttl_s):
            if not self.lost.is_set():
                log.error(
                    "task %s: another run took this run's lease; its report may be ignored",
                    self.task_id,
                )
            self.lost.set()
        if self.delivery_tag:
            self._inflight.hide_delivery(self.delivery_tag)

    def start_renewing(self) -> None:
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"lease-{self.task_id}", daemon=True
        )
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        failing = False
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._refresh()
            except DispatchError as exc:
                if not failing:
                    log.warning("task %s: lease not renewed: %s", self.task_id, exc)
                failing = True
            else:
                failing = False

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl_s)
        with contextlib.suppress(DispatchError):  # it runs out by itself
            self._inflight.release_lease(self.task_id, str(self.holder))


@contextlib.contextmanager
def task_lease(
    ctx: Context, task_id: str, *, worker: str, delivery_tag: str | None = None
) -> Iterator[TaskLease | None]:
    """Hold the task's lease while the block runs; yields None (and holds nothing)
    when another live run has it, and the delivery must be dropped."""
    lease = TaskLease(ctx, task_id, worker=worker, delivery_tag=delivery_tag)
    if not lease.acquire():
        yield None
        return
    lease.start_renewing()
    try:
        yield lease
    finally:
        lease.release()
