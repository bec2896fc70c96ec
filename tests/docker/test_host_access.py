"""Host access the operator turned on reaches the container: a bridge network
and a read-only bind mount below an allowed folder; a worker whose operator
did not allow it refuses the step with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsys.config import Settings
from tests.reliability.drills import Drill, drill_stack
from tests.services import BUSYBOX_IMAGE
from workers.docker_step import refused_here

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hello from the host\n")
    yield from drill_stack(
        tmp_path, "host", docker_allow_network=True, docker_mount_roots=(str(shared),)
    )


def test_allowed_network_and_mounts_reach_the_container(drill: Drill, tmp_path: Path) -> None:
    mount = {"source": str(tmp_path / "shared"), "target": "/in"}
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
    assert not (tmp_path / "shared" / "x").exists()


def test_a_stricter_worker_refuses_what_the_web_app_accepted() -> None:
    spec = {"image": BUSYBOX_IMAGE, "command": ["true"], "network": "bridge"}
    assert "JOBSYS_DOCKER_ALLOW_NETWORK" in (refused_here(spec, Settings()) or "")
    assert refused_here(spec, Settings(docker_allow_network=True)) is None
