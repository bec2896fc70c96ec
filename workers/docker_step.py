"""The Celery task that runs a Docker step, with retries and backoff."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import shared_task

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.canvas import RUN_DOCKER_STEP
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.errors import (
    ImageError,
    SecretUnavailable,
    StepCancelled,
    StepError,
    StepFailed,
    StepTimeout,
)
from jobsys.service.progress import LogRecord, TaskStart
from jobsys.specs import DockerStep, Mount, docker_step_problems
from jobsys.states import JobStatus
from workers.container_logs import LogLimits
from workers.containers import (
    LABEL_JOB,
    LABEL_STEP,
    LABEL_TASK,
    POLL_S,
    ContainerResult,
    Limits,
    MountRefused,
    docker_client,
    forget_docker_client,
    remove_containers,
    remove_task_containers,
    run_container,
    shared_docker_client,
)
from workers.context import worker_context
from workers.execution import exclusive_run, gives_up

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0


def backoff_delay(base_s: float, attempt: int) -> float:
    """Exponential backoff with equal jitter: uniform in [c/2, c], c = min(300 s, base*2^(n-1))."""
    ceiling = min(MAX_BACKOFF_S, base_s * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def step_from_spec(spec: dict[str, Any], secrets: Mapping[str, str] | None = None) -> DockerStep:
    """The step to run; each ``{"secret": NAME}`` in its env becomes the value in
    ``secrets`` (the values are fetched by the worker, never stored in the spec)."""
    env = {
        key: secrets[value["secret"]] if isinstance(value, Mapping) and secrets else value
        for key, value in (spec.get("env") or {}).items()
    }
    return DockerStep(
        image=spec["image"],
        command=tuple(spec["command"]),
        env=env,
        timeout_s=spec["timeout_s"],
        retries=spec.get("retries", 0),
        retry_backoff_s=spec.get("retry_backoff_s", 1.0),
        stop_grace_s=spec.get("stop_grace_s", 10.0),
        mem_limit=spec.get("mem_limit"),
        cpus=spec.get("cpus"),
        name=spec.get("name", ""),
        network=spec.get("network", "none"),
        mounts=tuple(Mount(**m) for m in spec.get("mounts") or ()),
        privileged=spec.get("privileged", False),
    )


def refused_here(spec: dict[str, Any], settings: Settings) -> str | None:
    """Why this worker's operator does not allow the step (its image, host access
    or limits), or None: the worker's settings may be stricter than those of the
    web app that accepted it, or than the web app's were when it was stored."""
    problems = docker_step_problems(spec, settings)
    return "; ".join(f"{k}: {v}" for k, v in problems.items()) or None


def limits_of(settings: Settings) -> Limits:
    """The container limits and log caps this worker's operator set."""
    return Limits(
        settings.docker_default_mem_limit,
        settings.docker_default_cpus,
        LogLimits(settings.docker_max_log_line_bytes, settings.docker_max_log_bytes),
    )


@shared_task(name=RUN_DOCKER_STEP, bind=True)
def run_docker_step(self: Any, job_id: str, step_id: str) -> dict[str, Any]:
    ctx = worker_context()
    with exclusive_run(self, ctx) as begun:
        if begun is None:
            return {"skipped": True}
        if begun.attempt > 1:
            _remove_leftovers(ctx, self.request.id, begun)
        given_up = gives_up(ctx, begun)
        if given_up is not None:
            service.abandon_task(ctx, self.request.id, given_up)
            service.complete_step(ctx, step_id, JobStatus.FAILED, error=given_up)
            return {"exit_code": None, "status": JobStatus.FAILED.value}
        return _run_step(ctx, self.request.id, begun)


def _remove_leftovers(ctx: Context, task_id: str, begun: TaskStart) -> None:
    """A redelivery after its worker died: that run's container may still be
    running (the engine owns it), so remove it before starting another."""
    try:
        with contextlib.closing(docker_client()) as client:
            removed = remove_task_containers(client, task_id)
    except Exception as exc:  # cleaning up must not fail the step; the reaper retries
        removed, failure = [], f"; its container could not be looked up: {exc}"
    else:
        failure = ""
    containers = f"removed its container {', '.join(removed)}" if removed else "no container left"
    line = (
        f"[jobsys] delivery {begun.attempt}: the run on {begun.previous_worker or '?'} "
        f"was lost with its worker; {containers}{failure}"
    )
    log.warning("task %s: %s", task_id, line)
    record = LogRecord(line=line, stream="system")
    service.append_logs(ctx, begun.job_id, begun.step_id, [record])
    service.publish_logs(ctx, begun.job_id, begun.step_id, [record])


def _run_step(ctx: Context, task_id: str, start: TaskStart) -> dict[str, Any]:
    # The step's containers are removed once it is reported, not before.
    leftovers: list[Any] = []
    try:
        return _run_and_report(ctx, task_id, start, leftovers)
    finally:
        remove_containers(leftovers)


def _run_and_report(
    ctx: Context, task_id: str, start: TaskStart, leftovers: list[Any]
) -> dict[str, Any]:
    job_id, step_id = start.job_id, start.step_id
    refused = refused_here(start.step_spec, ctx.settings)
    if refused is not None:
        error = f"step {start.step_spec.get('name') or ''} refused on this worker: {refused}"
        return _fail_unstarted(ctx, task_id, step_id, error)
    try:
        secrets = service.reveal_secrets(
            ctx, SYSTEM, service.secret_names(start.step_spec), project=start.project
        )
    except SecretUnavailable as exc:
        return _fail_unstarted(ctx, task_id, step_id, f"{type(exc).__name__}: {exc}")
    step = step_from_spec(start.step_spec, secrets)
    # What the container prints is stored and streamed with the secrets' values masked.
    redact = service.Redactor(secrets.values())
    limits = limits_of(ctx.settings)
    labels = {LABEL_JOB: job_id, LABEL_STEP: step_id, LABEL_TASK: task_id}
    should_stop = functools.partial(service.is_cancelled, ctx, job_id)
    logs: list[LogRecord] = []

    def live(record: LogRecord) -> None:
        service.publish_logs(ctx, job_id, step_id, [redact.log(record)])

    def note(line: str) -> None:
        record = redact.log(LogRecord(line=line, stream="system"))
        logs.append(record)
        live(record)

    error: StepError | None = None
    exit_code: int | None = None
    for attempt in range(1, step.retries + 2):
        if should_stop():
            error = StepCancelled("the job was cancelled")
            break
        service.record_attempt(ctx, step_id)
        try:
            result = run_container(
                shared_docker_client(),
                step,
                labels=labels,
                limits=limits,
                mount_roots=ctx.settings.docker_mount_roots,
                should_stop=should_stop,
                on_output=live,
                leftovers=leftovers,
            )
        except (ImageError, MountRefused) as exc:
            error = exc
            break  # retrying cannot make a missing image appear or a link go away
        except StepError as exc:
            forget_docker_client()  # the engine may have gone: reconnect next time
            error = exc
        except Exception as exc:
            forget_docker_client()
            # Anything unforeseen still ends the step: a step left "running"
            # with no task behind it would hang its job.
            log.exception("Docker step %s failed unexpectedly", step_id)
            error = StepError(f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            logs.extend(redact.log(r) for r in result.logs)
            exit_code = result.exit_code
            error = _judge(result, step)
            if error is None or isinstance(error, StepCancelled):
                break
        if attempt <= step.retries:
            delay = backoff_delay(step.retry_backoff_s, attempt)
            note(f"[jobsys] attempt {attempt} failed ({error}); retrying in {delay:.1f} s")
            _sleep_unless(should_stop, delay)
    reason = None if error is None else f"{type(error).__name__}: {error}"
    if error is not None:
        note(f"[jobsys] step ended: {reason}")
    service.finish_task(
        ctx, task_id, ok=error is None, error=reason, logs=logs, logs_published=True
    )
    if isinstance(error, StepCancelled):
        status = JobStatus.CANCELLED  # the job is already cancelled; this only records it
    else:
        status = JobStatus.COMPLETED if error is None else JobStatus.FAILED
    service.complete_step(ctx, step_id, status, error=reason, exit_code=exit_code)
    return {"exit_code": exit_code, "status": status.value}


def _fail_unstarted(ctx: Context, task_id: str, step_id: str, error: str) -> dict[str, Any]:
    """End the task and its step as failed before any container was started."""
    service.finish_task(ctx, task_id, ok=False, error=error)
    status = service.complete_step(ctx, step_id, JobStatus.FAILED, error=error)
    return {"exit_code": None, "status": status.value}


def _judge(result: ContainerResult, step: DockerStep) -> StepError | None:
    if result.stopped:
        return StepCancelled(f"the job was cancelled; container stopped (exit {result.exit_code})")
    if result.timed_out:
        return StepTimeout(f"timed out after {step.timeout_s:g} s; container killed")
    if result.exit_code != 0:
        return StepFailed(result.exit_code)
    return None


def _sleep_unless(should_stop: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(POLL_S, left))
