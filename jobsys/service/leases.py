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
        #: Held by a renewal in progress; ``release`` takes it, so that no
        #: renewal (which re-creates a vanished lease) runs after it.
        self._renewing = threading.Lock()
        self._released = False
        self._failing = False

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
        _RENEWER.add(self)

    def _renew_once(self) -> None:
        with self._renewing:
            if self._released:
                return
            try:
                self._refresh()
            except DispatchError as exc:
                if not self._failing:
                    log.warning("task %s: lease not renewed: %s", self.task_id, exc)
                self._failing = True
            else:
                self._failing = False

    def release(self) -> None:
        _RENEWER.remove(self)
        with self._renewing:  # waits for a renewal in progress
            self._released = True
        with contextlib.suppress(DispatchError):  # it runs out by itself
            self._inflight.release_lease(self.task_id, str(self.holder))


class _Renewer:
    """One thread per process renews every lease the process holds, each every
    third of its TTL. A thread started and joined per task cost each task about
    0.2 ms, and a pool child holds one lease at a time (a thread pool a few).

    A forked child (a prefork pool process) inherits no thread: it starts its own."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._guard = threading.Lock()
        self._pid: int | None = None
        self._wake = threading.Condition()
        self._due: dict[TaskLease, float] = {}

    def _ensure_thread(self) -> None:
        with self._guard:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="lease-renewer", daemon=True).start()

    def add(self, lease: TaskLease) -> None:
        self._ensure_thread()
        with self._wake:
            self._due[lease] = time.monotonic() + lease.ttl_s / 3
            self._wake.notify()

    def remove(self, lease: TaskLease) -> None:
        with self._wake:
            self._due.pop(lease, None)

    def _run(self) -> None:
        wake, due = self._wake, self._due
        while True:
            with wake:
                now = time.monotonic()
                ready = [lease for lease, at in due.items() if at <= now]
                for lease in ready:
                    due[lease] = now + lease.ttl_s / 3
                if not ready:
                    wake.wait(timeout=min(due.values(), default=now + 60) - now)
                    continue
            for lease in ready:  # outside the condition: a renewal is a Redis call
                lease._renew_once()


_RENEWER = _Renewer()
os.register_at_fork(after_in_child=_RENEWER._reset)


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
