"""Celery's prefork pool, which also notices a dead pool process within half a second.

The pool learns that a process died when the process's sentinel pipe becomes
readable in the worker's event loop, and as a backstop every 5 s. Drills
showed the sentinel missed now and then: a process killed by SIGKILL (an OOM
kill, a segfault, a poison item) sat in the pool with its exit status known
for up to 5 s before its task was failed and requeued. With the visibility
timeout shorter than that, kombu meanwhile hands the message to another
worker, and the late requeue then acts under a delivery tag the newer
delivery holds: a copy too many, or none (the task lost, and the lost-task
sweep failing it instead of the delivery limit).

So every ``REAP_EVERY_S`` this pool checks its processes' exit status (one
``waitpid(WNOHANG)`` each) and runs the pool's own clean-up when one is gone.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency import asynpool, prefork

#: How often the pool looks for a dead process itself (seconds).
REAP_EVERY_S = 0.5


class AsynPool(asynpool.AsynPool):
    """The event-loop prefork pool; see the module docstring."""

    @property
    def timers(self) -> dict[Any, float]:
        return {**super().timers, self.reap_dead_processes: REAP_EVERY_S}

    def reap_dead_processes(self) -> bool:
        """Clean up after pool processes that exited (failing and requeueing the
        tasks they ran, starting replacements); True when there were any."""
        if not any(proc.exitcode is not None for proc in self._pool):
            return False
        self.maintain_pool()
        return True


class TaskPool(prefork.TaskPool):
    """Celery's prefork pool (``-P prefork``) with our ``AsynPool``."""

    Pool = AsynPool
