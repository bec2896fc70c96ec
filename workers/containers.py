"""Running one container for a Docker step, through the docker SDK.

The plain function here knows nothing of Celery or the database, so it can be
tested against the engine alone. Containers run with no network, memory,
CPU and process limits, no new privileges, a bounded Docker log, and labels
naming their job, so cancellation and the orphan reaper can find them. Mount
sources are walked on this host right before the container is created, so a
symbolic link a job planted below a mount root cannot lead another job's
mount out of it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import posixpath
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import _create_container_args
from docker.types import Mount

from jobsys.errors import ImageError, StepError, StepFailed
from jobsys.service.progress import LogRecord
from jobsys.specs import DockerStep
from jobsys.specs import Mount as MountSpec
from workers.container_logs import (
    STREAMS,
    LogLimits,
    Seen,
    followed_logs,
    read_logs,
    start_follower,
)

log = logging.getLogger(__name__)

LABEL_JOB = "jobsys.job"
LABEL_STEP = "jobsys.step"
LABEL_TASK = "jobsys.task"


@dataclass(frozen=True)
class Limits:
    """What a container gets unless its step asks for less (mem, cpus), and how
    much of its output is kept."""

    mem_limit: str
    cpus: float
    logs: LogLimits = field(default_factory=LogLimits)


class MountRefused(StepError):
    """Raised when a mount source leaves the mount roots on this worker's host
    (through a symbolic link), or is missing; retrying would not change it."""


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


_shared: tuple[int, docker.DockerClient] | None = None


def shared_docker_client() -> docker.DockerClient:
    """This process's client, made (and pinged) on first use and kept: a new
    client per step paid for a connection and a ping each time. Per process id,
    since a forked pool child must not talk over its parent's connections;
    ``forget_docker_client`` drops it after an error, so the next step reconnects."""
    global _shared
    pid = os.getpid()
    if _shared is None or _shared[0] != pid:
        _shared = (pid, docker_client())
    return _shared[1]


def forget_docker_client() -> None:
    global _shared
    found, _shared = _shared, None
    if found is not None and found[0] == os.getpid():
        with contextlib.suppress(Exception):
            found[1].close()


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
    mount_roots: Sequence[str] = (),
    should_stop: Callable[[], bool] = _never,
    on_output: Callable[[LogRecord], None] | None = None,
    leftovers: list[Any] | None = None,
) -> ContainerResult:
    """Run the step's container to its end (or its timeout), save its output, remove it.

    With ``leftovers``, a container that ran to its end and whose output was read
    is put there instead of removed, for the caller to remove once it has
    reported the step (removing takes tens of milliseconds that nobody waiting
    for the step needs to wait for); on any error it is removed here, at once.
    If the worker dies before removing it, the orphan reaper does.

    ``mount_roots`` are this worker's ``JOBSYS_DOCKER_MOUNT_ROOTS``: every mount
    source is walked below them right before the container is created, and the
    resolved path is what gets mounted (``resolve_mount_source``).
    """
    mounts = [
        Mount(m.target, source, type="bind", read_only=m.read_only)
        for m, source in zip(step.mounts, resolve_mounts(step.mounts, mount_roots), strict=True)
    ]
    try:
        container = _create(
            client,
            image=step.image,
            command=list(step.command),
            environment=dict(step.env),
            labels=dict(labels),
            # No network, mounts or privileges unless the operator allowed the
            # step's (checked at submit and again on this worker).
            network_mode=step.network,
            mounts=mounts,
            mem_limit=step.mem_limit or limits.mem_limit,
            nano_cpus=int((step.cpus or limits.cpus) * 1e9),
            pids_limit=512,
            privileged=step.privileged,
            security_opt=[] if step.privileged else ["no-new-privileges"],
            # Docker keeps the whole output on the host's disk unless told otherwise.
            log_config=limits.logs.docker_log(),
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
        seen = {stream: Seen() for stream in STREAMS}
        followers = [
            start_follower(container, stream, limits.logs, seen[stream], on_output)
            for stream in STREAMS
        ]
        exit_code, ending = _wait(container, step, should_stop)
        for follower in followers:
            follower.join(timeout=5)
        # What the followers kept is the log, if they read it to its end; else it
        # is read again (auto_remove would make that impossible: read, then remove).
        logs = None if any(f.is_alive() for f in followers) else followed_logs(seen, limits.logs)
        if logs is None:
            logs = read_logs(container, limits.logs, seen)
    except BaseException:
        _remove(container)
        raise
    if leftovers is None:
        _remove(container)
    else:
        leftovers.append(container)
    return ContainerResult(exit_code=exit_code, ending=ending, logs=logs)


def _create(client: docker.DockerClient, **options: Any) -> Any:
    """``client.containers.create`` without the inspect it makes of the new
    container to fill its model: everything here (start, wait, logs, stop,
    remove) needs its id only, and that inspect is one more round trip to the
    engine on every step. The options are translated exactly as ``create`` does."""
    options["version"] = client.api._version
    created = client.api.create_container(**_create_container_args(options))
    return client.containers.prepare_model({"Id": created["Id"]})


def remove_containers(containers: Sequence[Any]) -> None:
    """Remove what ``run_container`` left; a failure is logged (the reaper retries)."""
    for container in containers:
        try:
            _remove(container)
        except Exception as exc:
            log.warning("could not remove container %s: %s", container.short_id, exc)


def resolve_mounts(mounts: Sequence[MountSpec], roots: Sequence[str]) -> list[str]:
    """The host paths to bind-mount for ``mounts``, each from ``resolve_mount_source``."""
    return [resolve_mount_source(m.source, roots) for m in mounts]


def resolve_mount_source(source: str, roots: Sequence[str]) -> str:
    """The real path to bind-mount for ``source``, walked on this host with ``lstat``.

    The submit check compares strings, and a job that may write below a root can
    plant ``x/root -> /`` there: a second job mounting ``x/root`` would get the
    host's ``/``. So every component of the path, from ``/`` down, must be a
    real folder or file (a link anywhere is refused, the roots' own components
    included: the operator gives roots by their real paths), and the resolved
    path must lie below one of the resolved roots. The engine resolves the path
    again when it mounts: a job that can write below a root can still swap a
    component for a link between this check and the mount (see SECURITY.md).
    """
    clean = posixpath.normpath(source)
    named = [posixpath.normpath(r) for r in roots]
    if not posixpath.isabs(clean) or not any(_below(clean, r) for r in named):
        allowed = ", ".join(roots) or "none"
        raise MountRefused(
            f"mount source {source!r} is outside this worker's JOBSYS_DOCKER_MOUNT_ROOTS "
            f"({allowed})"
        )
    walked = "/"
    for part in [p for p in clean.split("/") if p]:
        walked = posixpath.join(walked, part)
        try:
            info = os.lstat(walked)
        except FileNotFoundError as exc:
            raise MountRefused(
                f"mount source {source!r} does not exist on this worker's host ({walked} is "
                "missing); create it before the step runs"
            ) from exc
        except OSError as exc:
            raise MountRefused(
                f"mount source {source!r} cannot be checked ({walked}: {exc.strerror})"
            ) from exc
        if stat.S_ISLNK(info.st_mode):
            raise MountRefused(_link_refusal(source, walked, named))
    resolved = os.path.realpath(clean)
    real_roots = [os.path.realpath(r) for r in named]
    if not any(_below(resolved, r) for r in real_roots):
        raise MountRefused(
            f"mount source {source!r} resolves to {resolved}, outside this worker's "
            f"mount roots ({', '.join(real_roots)})"
        )
    return resolved


def _link_refusal(source: str, link: str, roots: Sequence[str]) -> str:
    try:
        points_to = os.readlink(link)
    except OSError:
        points_to = "?"
    said = f"mount source {source!r} goes through the symbolic link {link} -> {points_to}"
    for root in roots:
        if _below(root, link):  # the link is the root or above it: the operator's setting
            return (
                f"{said}; give the mount root {root} by its real path "
                f"({os.path.realpath(root)}) in JOBSYS_DOCKER_MOUNT_ROOTS"
            )
    return f"{said}; links below a mount root are refused, since a job could point one anywhere"


def _below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _remove(container: Any) -> None:
    with contextlib.suppress(NotFound):
        container.remove(force=True)


def remove_task_containers(client: docker.DockerClient, task_id: str) -> list[str]:
    """Remove the containers of one task (a run of it died with its worker);
    their short ids."""
    found = client.containers.list(
        all=True, filters={"label": f"{LABEL_TASK}={task_id}"}, ignore_removed=True
    )
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
    # A container can go between the listing and its inspect (a step ending,
    # another jobsys's reaper on a shared engine): skip it, reap the rest.
    containers = client.containers.list(all=True, filters={"label": LABEL_JOB}, ignore_removed=True)
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
