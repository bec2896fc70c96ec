"""Running one container for a Docker step, through the docker SDK.

The plain function here knows nothing of Celery or the database, so it can be
tested against the engine alone. Containers run with no network, memory,
CPU and process limits, no new privileges, and labels naming their job, so
cancellation and the orphan reaper can find them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from jobsys.errors import ImageError, StepError, StepFailed
from jobsys.service.progress import LogRecord
from jobsys.specs import DockerStep

LABEL_JOB = "jobsys.job"
LABEL_STEP = "jobsys.step"
LABEL_TASK = "jobsys.task"
MAX_LOG_LINES = 100_000


@dataclass(frozen=True)
class Limits:
    mem_limit: str
    cpus: float


@dataclass(frozen=True)
class ContainerResult:
    exit_code: int
    timed_out: bool
    logs: tuple[LogRecord, ...]


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except DockerException as exc:
        raise StepError(
            f"the Docker engine is not reachable ({exc}); start dockerd or set DOCKER_HOST"
        ) from exc
    return client


def run_container(
    client: docker.DockerClient,
    step: DockerStep,
    *,
    labels: Mapping[str, str],
    limits: Limits,
) -> ContainerResult:
    """Run the step's container to its end (or its timeout), save its output, remove it."""
    try:
        container = client.containers.create(
            step.image,
            list(step.command),
            environment=dict(step.env),
            labels=dict(labels),
            network_mode="none",
            mem_limit=step.mem_limit or limits.mem_limit,
            nano_cpus=int((step.cpus or limits.cpus) * 1e9),
            pids_limit=512,
            privileged=False,
            security_opt=["no-new-privileges"],
            detach=True,
        )
    except ImageNotFound as exc:
        raise ImageError(
            f"image {step.image!r} is not on this Docker engine; load or build it there first"
        ) from exc
    except APIError as exc:
        raise StepError(f"Docker refused to create the container: {exc.explanation}") from exc
    try:
        try:
            container.start()
        except APIError as exc:
            # e.g. the command's executable does not exist in the image
            raise StepFailed(127, f"the container could not start: {exc.explanation}") from exc
        timed_out = False
        try:
            exit_code = int(container.wait(timeout=step.timeout_s)["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            container.kill()
            exit_code = int(container.wait(timeout=30)["StatusCode"])
        # auto_remove would make the logs unreadable after exit: read, then remove.
        logs = _read_logs(container)
    finally:
        _remove(container)
    return ContainerResult(exit_code=exit_code, timed_out=timed_out, logs=logs)


def _read_logs(container: Any) -> tuple[LogRecord, ...]:
    records: list[tuple[datetime, int, LogRecord]] = []
    for stream in ("stdout", "stderr"):
        raw = container.logs(stdout=stream == "stdout", stderr=stream == "stderr", timestamps=True)
        for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines()):
            ts, _, text = line.partition(" ")
            when = _parse_ts(ts)
            records.append((when, n, LogRecord(line=text, stream=stream, ts=when)))
    records.sort(key=lambda r: (r[0], r[1]))
    kept = [r[2] for r in records[-MAX_LOG_LINES:]]
    if len(records) > MAX_LOG_LINES:
        dropped = len(records) - MAX_LOG_LINES
        kept.insert(0, LogRecord(line=f"[jobsys] {dropped} earlier lines dropped", stream="system"))
    return tuple(kept)


def _parse_ts(text: str) -> datetime:
    # Docker writes RFC 3339 with nanoseconds; Python takes microseconds.
    try:
        head, _, frac = text.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    except ValueError:
        return datetime.now(UTC)


def _remove(container: Any) -> None:
    with contextlib.suppress(NotFound):
        container.remove(force=True)
