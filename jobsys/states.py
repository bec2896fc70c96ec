"""The statuses of jobs, steps and tasks, and the one table of the moves
between them. They are the domain's words, not the database's: the client and
the CLI speak them without loading the tables (``jobsys.store.models`` stores
them)."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

#: The one status-transition table, for jobs and steps alike. Updates are written
#: as ``UPDATE ... WHERE status IN (sources)`` so concurrent writers cannot skip it.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def sources_of(target: JobStatus) -> tuple[str, ...]:
    """The statuses a row may move to ``target`` from."""
    return tuple(s.value for s, targets in TRANSITIONS.items() if target in targets)


class TaskState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
