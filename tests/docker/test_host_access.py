"""Host access the operator turned on reaches the container: a bridge network
and a read-only bind mount below an allowed folder; a worker whose operator
did not allow it (or allows fewer images, or less memory) refuses the step
with the reason."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from jobsys.config import Settings
from tests.support.drills import Drill, drill_stack
from tests.support.live import wait_until
from tests.support.services import BUSYBOX_IMAGE
from workers.docker_step import refused_here

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("host")


@pytest.fixture(scope="module")
def drill(tmp: Path) -> Iterator[Drill]:
    """One stack for this module (a stack takes seconds to start)."""
    shared = tmp / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hello from the host\n")
    yield from drill_stack(
        tmp, "host", docker_allow_network=True, docker_mount_roots=(str(shared),)
    )


def test_allowed_network_and_mounts_reach_the_container(drill: Drill, tmp: Path) -> None:
    drill.ensure_workers(1)  # one with the stack's own settings (see ``narrow``)
    mount = {"source": str(tmp / "shared"), "target": "/in"}
    script = "cat /in/hello.txt; ls /sys/class/net; touch /in/x || echo read-only"
    with drill.stack.client() as c:
        bridged = c.submit_spec(
            {
                "name": "host-access",
                "steps": [
                    {
                        "kind": "docker",
                        "image": BUSYBOX_IMAGE,
                        "command": ["sh", "-c", script],
                        "network": "bridge",
                        "mounts": [mount],
                    }
                ],
            }
        ).wait(60)
        default = c.run_docker(BUSYBOX_IMAGE, ["ls", "/sys/class/net"]).wait(60)
        bridged_lines = [entry["line"] for entry in bridged.logs()]
        default_lines = [entry["line"] for entry in default.logs()]
    assert bridged.status == "completed", bridged.error
    assert "hello from the host" in bridged_lines and "read-only" in bridged_lines
    assert "eth0" in bridged_lines
    assert "eth0" not in default_lines and "lo" in default_lines
    assert not (tmp / "shared" / "x").exists()


def test_a_stricter_worker_refuses_what_the_web_app_accepted() -> None:
    spec = {"image": BUSYBOX_IMAGE, "command": ["true"], "network": "bridge"}
    assert "JOBSYS_DOCKER_ALLOW_NETWORK" in (refused_here(spec, Settings()) or "")
    assert refused_here(spec, Settings(docker_allow_network=True)) is None


@pytest.fixture
def other_name() -> Iterator[str]:
    """The same image under a second name, which the web app's list (jobsys/*)
    allows and the narrow worker's does not; a tag of this run's own, since the
    Docker engine is shared and another run removes its tag when it ends."""
    name = f"jobsys/busybox:not-on-the-worker-list-{uuid.uuid4().hex[:8]}"
    with contextlib.closing(docker.from_env()) as client:
        client.images.get(BUSYBOX_IMAGE).tag(name)
        try:
            yield name
        finally:
            client.images.remove(name)  # the tag only: the image keeps its own


@pytest.fixture
def narrow(drill: Drill) -> Iterator[Drill]:
    """The stack's worker replaced by one whose operator allows only BUSYBOX_IMAGE,
    at most 128m per step (64m unless asked) and a small stored log; the web app
    keeps its settings."""
    drill.kill("worker")
    argv = [sys.executable, "-m", "celery", "-A", "jobsys.celery_app", "worker"]
    drill.stack.spawn(
        "narrow",
        [*argv, "-Q", "python,docker", "-c", "2", "-n", f"narrow-{drill.name}@%h", "-l", "INFO"],
        JOBSYS_DOCKER_IMAGES=BUSYBOX_IMAGE,
        JOBSYS_DOCKER_MAX_MEM="128m",
        JOBSYS_DOCKER_DEFAULT_MEM_LIMIT="64m",
        JOBSYS_DOCKER_MAX_LOG_BYTES="4096",
        JOBSYS_DOCKER_MAX_LOG_LINE_BYTES="64",
    )
    wait_until(lambda: " ready." in drill.stack.log("narrow"), 60, "the narrow worker")
    try:
        yield drill
    finally:
        drill.kill("narrow")  # a later test of this module starts a worker it needs


def test_a_worker_with_narrower_settings_refuses_and_caps_what_the_web_app_accepted(
    narrow: Drill, other_name: str
) -> None:
    def run(image: str, script: str, **extra: object) -> tuple[str, str, list[str]]:
        spec = {"kind": "docker", "image": image, "command": ["sh", "-c", script], **extra}
        with narrow.stack.client() as c:
            job = c.submit_spec({"name": "narrow", "steps": [spec]}).wait(60)
            return job.status, job.error or "", [entry["line"] for entry in job.logs()]

    status, error, _ = run(other_name, "echo ran")
    assert status == "failed" and "refused on this worker" in error
    assert f"image {other_name!r} is not allowed; allowed: {BUSYBOX_IMAGE}" in error

    status, error, _ = run(BUSYBOX_IMAGE, "echo ran", mem_limit="256m")
    assert status == "failed" and "JOBSYS_DOCKER_MAX_MEM" in error and "128m" in error

    script = "i=0; while [ $i -lt 1000 ]; do echo line-$i; i=$((i+1)); done; "
    status, error, logs = run(BUSYBOX_IMAGE, script + "printf '%0200d\\n' 7; echo end")
    assert (status, error) == ("completed", "")
    assert logs[0].startswith("[jobsys: ") and "earlier lines" in logs[0]
    assert logs[-2] == "0" * 64 + " [jobsys: line cut at 64 bytes; 136 more not stored]"
    assert logs[-1] == "end" and 300 < len(logs) < 1002
