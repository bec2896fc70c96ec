"""The orphan reaper at a Docker worker's start (README: "An orphan reaper (beat,
every minute, and at each Docker worker's start) removes containers of jobs
that are no longer running"; "removes only containers of jobs its own database
knows and has seen end").

The live stack runs no beat and nothing here revokes a task, so the only thing
that can remove the orphan is the second worker's start-up pass.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from typing import Any

import docker
import pytest

from tests.support.docker import containers_of, finished, lines, step, submit
from tests.support.live import LiveStack, wait_until, worker_argv
from tests.support.services import BUSYBOX_IMAGE
from workers.containers import LABEL_JOB, reap_orphans

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: Runs until the test lets it finish, so it is surely running while the reaper looks.
WAITS_FOR_GO = "echo up; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo done"


def leave_container(job_id: str) -> str:
    """A container labelled as jobsys's for ``job_id``, as a dead worker leaves one."""
    out = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            f"{LABEL_JOB}={job_id}",
            BUSYBOX_IMAGE,
            "sleep",
            "120",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()[:12]


# Once, on the production database: a worker's start costs seconds on a loaded machine.
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_a_starting_docker_worker_reaps_orphans_and_keeps_running_jobs(stack: LiveStack) -> None:
    ended = submit(stack, step("true"))
    assert finished(stack, ended)["status"] == "completed"
    running = submit(stack, step(WAITS_FOR_GO, timeout_s=120))
    wait_until(lambda: containers_of(running), 60, "the running job's container")
    (kept,) = containers_of(running)
    orphan = leave_container(ended)
    unknown = f"other-{uuid.uuid4().hex}"  # a job this database never saw: another jobsys's
    foreign = leave_container(unknown)
    name = f"reaper-{stack.name}-{uuid.uuid4().hex[:6]}"
    worker = stack.spawn(name, worker_argv(f"{name}@%h", queues="docker", concurrency=1))
    try:
        # Celery logs "ready." after the worker_ready handlers, the reaper's among them.
        wait_until(
            lambda: f"{name}@" in stack.log(name) and " ready." in stack.log(name),
            90,
            "the second worker to be ready",
        )
        assert re.search(r"removed \d+ orphaned job containers", stack.log(name))
        assert containers_of(ended) == []
        assert containers_of(running) == [kept]
        assert containers_of(unknown) == [foreign]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        del stack.processes[name]
        subprocess.run(["docker", "rm", "-f", orphan, foreign], capture_output=True)
        # the running job is let go whatever happened, or it would hold the stack's
        # Docker worker for its 120 s
        go = subprocess.run(["docker", "exec", kept, "sh", "-c", ": > /tmp/go"])
    assert go.returncode == 0
    job = finished(stack, running)
    assert job["status"] == "completed", job["error"]
    assert lines(stack, running, "stdout") == ["up", "done"]


def test_a_container_removed_while_the_reaper_lists_them_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a shared engine a container can go between the listing and its inspect
    (another step ending, another jobsys's reaper): the pass goes on without it."""
    job_id = f"gone-{uuid.uuid4().hex}"
    orphan = leave_container(job_id)
    with contextlib.closing(docker.from_env()) as client:
        listing = client.api.containers

        def with_one_gone(**kwargs: Any) -> list[dict[str, Any]]:
            return [{"Id": "0" * 64}, *listing(**kwargs)]  # no such container any more

        monkeypatch.setattr(client.api, "containers", with_one_gone)
        try:
            assert reap_orphans(client, lambda ids: {job_id} & set(ids)) == 1
        finally:
            subprocess.run(["docker", "rm", "-f", orphan], capture_output=True)
    assert containers_of(job_id) == []
