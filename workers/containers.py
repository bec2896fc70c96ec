"""Running one container for a Docker step, through the docker SDK.

The plain function here knows nothing of Celery or the database, so it can be
tested against the engine alone. Containers run with no network, memory,
CPU and process limits, no new privileges, and labels naming their job, so
cancellation and the orphan reaper can find them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount

from jobsys.errors import ImageError, StepError, StepFailed
from jobsys.service.progress import LogRecord
from jobsys.specs import DockerStep

log = logging.getLogger(__name__)

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
    #: "exited" on its own, "timeout" (killed at its timeout) or "stopped" (cancelled).
    ending: str
    logs: tuple[LogRecord, ...]

    @property
    def timed_out(self) -> bool:
        return self.ending == "timeout"

    @property
    def stopped(self) -> bool:
        return self.ending == "stopped"


#: How often a running container's job is checked for cancellation, in seconds.
POLL_S = 0.25


def _never() -> bool:
    return False


def _wait(container: Any, step: DockerStep, should_stop: Callable[[], bool]) -> tuple[int, str]:
    """Wait for the container's exit in short slices, so a cancel is noticed
    within ``POLL_S``: SIGTERM, then SIGKILL after the step's grace period."""
    deadline = time.monotonic() + step.timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            container.kill()
            return int(container.wait(timeout=30)["StatusCode"]), "timeout"
        if should_stop():
            container.stop(timeout=max(0, math.ceil(step.stop_grace_s)))
            return int(container.wait(timeout=30)["StatusCode"]), "stopped"
        try:
            return int(container.wait(timeout=min(POLL_S, left))["StatusCode"]), "exited"
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            continue


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
    should_stop: Callable[[], bool] = _never,
    on_output: Callable[[LogRecord], None] | None = None,
) -> ContainerResult:
    """Run the step's container to its end (or its timeout), save its output, remove it."""
    try:
        container = client.containers.create(
            step.image,
            list(step.command),
            environment=dict(step.env),
            labels=dict(labels),
            # No network, mounts or privileges unless the operator allowed the
            # step's (checked at submit and again on this worker).
            network_mode=step.network,
            mounts=[
                Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in step.mounts
            ],
            mem_limit=step.mem_limit or limits.mem_limit,
            nano_cpus=int((step.cpus or limits.cpus) * 1e9),
            pids_limit=512,
            privileged=step.privileged,
            security_opt=[] if step.privileged else ["no-new-privileges"],
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
        followers = (
            []
            if on_output is None
            else [_start_follower(container, stream, on_output) for stream in ("stdout", "stderr")]
        )
        exit_code, ending = _wait(container, step, should_stop)
        for follower in followers:
            follower.join(timeout=5)
        # auto_remove would make the logs unreadable after exit: read, then remove.
        logs = _read_logs(container)
    finally:
        _remove(container)
    return ContainerResult(exit_code=exit_code, ending=ending, logs=logs)


def _start_follower(
    container: Any, stream: str, on_output: Callable[[LogRecord], None]
) -> threading.Thread:
    """Hand each line to ``on_output`` as the container writes it (the live view).

    The stored copy is read again after exit (``_read_logs``), complete and in
    order, so a hiccup here costs the live view only.
    """

    def follow() -> None:
        pending = b""
        try:
            chunks = container.logs(
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=True,
                timestamps=True,
            )
            for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    ts, _, text = raw.decode("utf-8", errors="replace").partition(" ")
                    on_output(LogRecord(line=text, stream=stream, ts=_parse_ts(ts)))
        except Exception as exc:  # the container went away under us: nothing to lose
            log.debug("log follower for %s stopped: %s", stream, exc)

    thread = threading.Thread(target=follow, name=f"follow-{stream}", daemon=True)
    thread.start()
    return thread


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


def remove_task_containers(client: docker.DockerClient, task_id: str) -> list[str]:
    """Remove the containers of one task (a run of it died with its worker);
    their short ids."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL_TASK}={task_id}"})
    for container in found:
        _remove(container)
    return [c.short_id for c in found]


def reap_orphans(client: docker.DockerClient, ended: Callable[[list[str]], set[str]]) -> int:
    """Remove every container labelled with one of our jobs that has ended.

    A worker killed mid-step (or a task terminated from Flower) leaves its
    container behind; nothing else would ever remove it. ``ended`` answers from
    our database, so the containers of another jobsys on the same engine (which
    our database does not know) are left to their own reaper.
    """
    containers = client.containers.list(all=True, filters={"label": LABEL_JOB})
    by_job: dict[str, list[Any]] = {}
    for container in containers:
        by_job.setdefault(container.labels[LABEL_JOB], []).append(container)
    over = ended(list(by_job))
    reaped = 0
    for job_id, found in by_job.items():
        if job_id not in over:
            continue
        for container in found:
            _remove(container)
            reaped += 1
    return reaped
