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


def step_signature(plan: StepPlan, app: Any = None) -> Signature:
    """The step as one signature; ``app`` binds it (None: Celery's current app)."""
    if plan.kind == "docker":
        return signature(
            RUN_DOCKER_STEP,
            args=(plan.job_id, plan.step_id),
            options={
                "queue": DOCKER_QUEUE,
                "task_id": plan.task_id,
                "argsrepr": f"job={plan.job_id} step={plan.step_id}",
            },
            immutable=True,
            app=app,
        )
    header = [
        signature(
            RUN_FUNCTION_CHUNK,
            args=(plan.job_id, plan.step_id, c.index, c.start, list(c.items)),
            # Flower, `celery inspect` and events show this instead of the item blobs.
            options={
                "queue": PYTHON_QUEUE,
                "task_id": c.task_id,
                "argsrepr": (
                    f"job={plan.job_id} step={plan.step_id} chunk={c.index} "
                    f"items={c.start}-{c.start + len(c.items) - 1}"
                ),
            },
            immutable=True,
            app=app,
        )
        for c in plan.chunks
    ]
    # Chunks record their own results in the database and never raise for an
    # item's error, so the callback runs even when items fail.
    body = signature(
        GATHER_FUNCTION_STEP,
        args=(plan.job_id, plan.step_id),
        options={
            "queue": PYTHON_QUEUE,
            "task_id": plan.task_id,
            "argsrepr": f"job={plan.job_id} step={plan.step_id} gather",
        },
        immutable=True,
        app=app,
    )
    return chord(header, body, app=app)
