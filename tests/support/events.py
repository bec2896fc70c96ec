"""Job events: one Docker step driven through the service as a worker would,
and a server-sent events body parsed into its events."""

from __future__ import annotations

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.canvas import StepPlan
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.service.progress import LogRecord
from jobsys.states import JobStatus
from tests.support.specs import docker_spec


def play_docker_step(ctx: Context, sent: StepPlan, exit_code: int = 0) -> None:
    """Run the Docker step of message ``sent`` as a worker would: start its
    task, finish it and end the step, exiting with ``exit_code``."""
    service.start_task(ctx, sent.task_id, "w")
    error = None if exit_code == 0 else f"exit {exit_code}"
    service.finish_task(ctx, sent.task_id, ok=exit_code == 0, error=error)
    status = JobStatus.COMPLETED if exit_code == 0 else JobStatus.FAILED
    service.complete_step(ctx, sent.step_id, status, error=error, exit_code=exit_code)


def run_docker_job(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal, lines: list[str]
) -> str:
    """Drive one Docker step through the service as a worker would."""
    job = service.submit_job(ctx, developer, docker_spec())
    task_id = dispatcher.published[-1].task_id
    begun = service.start_task(ctx, task_id, "w1")
    assert begun is not None
    service.finish_task(ctx, task_id, ok=True, logs=[LogRecord(line=x) for x in lines])
    service.complete_step(ctx, begun.step_id, JobStatus.COMPLETED, exit_code=0)
    return job.id


def sse_events(body: str) -> list[dict[str, str]]:
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "event" in fields:
            events.append(fields)
    return events
