"""Step plans and the Celery signatures they become. Pure: builds values, sends nothing.

Task names are wire protocol: renaming one strands every message in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import chord, signature
from celery.canvas import Signature

RUN_DOCKER_STEP = "jobsys.run_docker_step"
RUN_FUNCTION_CHUNK = "jobsys.run_function_chunk"
GATHER_FUNCTION_STEP = "jobsys.gather_function_step"
SWEEP_OUTBOX = "jobsys.sweep_outbox"
REAP_ORPHANS = "jobsys.reap_orphans"
PURGE_HISTORY = "jobsys.purge_history"
SWEEP_LOST_TASKS = "jobsys.sweep_lost_tasks"

DOCKER_QUEUE = "docker"
PYTHON_QUEUE = "python"
QUEUES = (PYTHON_QUEUE, DOCKER_QUEUE)
#: The queue each step kind's tasks go to.
QUEUE_OF_KIND = {"function": PYTHON_QUEUE, "docker": DOCKER_QUEUE}
#: kombu's separator between a queue's name and its priority level in Redis key names.
PRIORITY_SEP = "\x06\x16"


@dataclass(frozen=True)
class ChunkPlan:
    task_id: str
    index: int
    start: int
    stop: int
    #: Items in stored form (JSON values and signed ``$pickle`` envelopes).
    items: Sequence[Any]


@dataclass(frozen=True)
class StepPlan:
    """What one step sends to Celery; task ids are chosen up front so the
    database knows every task before the broker does."""

    job_id: str
    step_id: str
    kind: str
    task_id: str
    chunks: Sequence[ChunkPlan] = ()
    #: The job's priority, 0 (lowest) to 9 (most urgent).
    priority: int = 5
    #: Per chunk of a function step (seconds); None for no limit.
    soft_time_limit_s: float | None = None
    time_limit_s: float | None = None


def broker_priority(priority: int) -> int:
    """kombu's Redis transport serves its lowest number first: 9 (urgent) -> 0."""
    return 9 - priority


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps for ``queue``, one per priority level (0 is the plain name)."""
    return [queue] + [f"{queue}{PRIORITY_SEP}{p}" for p in range(1, 10)]


def step_signature(plan: StepPlan, app: Any = None) -> Signature:
    """The step as one signature; ``app`` binds it (None: Celery's current app).

    A step of one chunk (every one-call job) is that chunk's task alone, told to
    end its step itself (``sole=True``): a chord would add a result write, a
    counter and a second task to what is one round of work. Its return value is
    not stored, since no callback reads it."""
    if plan.kind == "docker":
        return signature(
            RUN_DOCKER_STEP,
            args=(plan.job_id, plan.step_id),
            options={
                "queue": DOCKER_QUEUE,
                "task_id": plan.task_id,
                "priority": broker_priority(plan.priority),
                "argsrepr": f"job={plan.job_id} step={plan.step_id}",
                # It reports to the database; no chord or caller reads a Celery
                # result, so neither its STARTED state nor its return is stored.
                "ignore_result": True,
            },
            immutable=True,
            app=app,
        )
    sole = len(plan.chunks) == 1
    header = [
        signature(
            RUN_FUNCTION_CHUNK,
            args=(plan.job_id, plan.step_id, c.index, c.start, list(c.items)),
            kwargs={"sole": True} if sole else {},
            # Flower, `celery inspect` and events show this instead of the item blobs.
            options={
                "queue": PYTHON_QUEUE,
                "task_id": c.task_id,
                "priority": broker_priority(plan.priority),
                "argsrepr": (
                    f"job={plan.job_id} step={plan.step_id} chunk={c.index} "
                    f"items={c.start}-{c.start + len(c.items) - 1}"
                ),
                **_limits(plan),
                **({"ignore_result": True} if sole else {}),
            },
            immutable=True,
            app=app,
        )
        for c in plan.chunks
    ]
    if sole:
        return header[0]
    # Chunks record their own results in the database and never raise for an
    # item's error, so the callback runs even when items fail.
    body = signature(
        GATHER_FUNCTION_STEP,
        args=(plan.job_id, plan.step_id),
        options={
            "queue": PYTHON_QUEUE,
            "task_id": plan.task_id,
            "priority": broker_priority(plan.priority),
            "argsrepr": f"job={plan.job_id} step={plan.step_id} gather",
        },
        immutable=True,
        app=app,
    )
    return chord(header, body, app=app)


def _limits(plan: StepPlan) -> dict[str, float]:
    """Celery's per-task time limits for a chunk, where the step sets them."""
    found = {"soft_time_limit": plan.soft_time_limit_s, "time_limit": plan.time_limit_s}
    return {k: v for k, v in found.items() if v is not None}
