"""Mount roots do not leak through symbolic links (issue 14, item 3).

The submit check compares paths as strings. A job allowed to mount a folder
below a root read-write can plant ``root -> /`` in it; a second job mounting
``<folder>/root`` would get the host's ``/``. The worker walks each source with
``lstat`` right before it creates the container and refuses any link.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.drills import Drill, drill_stack
from tests.support.services import BUSYBOX_IMAGE
from workers.containers import MountRefused, resolve_mount_source

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (folder / "x").mkdir(parents=True)
    return folder


@pytest.fixture
def drill(tmp_path: Path, root: Path) -> Iterator[Drill]:
    yield from drill_stack(tmp_path, "links", docker_mount_roots=(str(root),))


def docker_step(script: str, *mounts: dict[str, object]) -> dict[str, object]:
    return {
        "kind": "docker",
        "image": BUSYBOX_IMAGE,
        "command": ["sh", "-c", script],
        "timeout_s": 30,
        "mounts": list(mounts),
    }


def test_a_link_planted_by_one_job_does_not_lead_the_next_out_of_the_root(
    drill: Drill, root: Path
) -> None:
    (root / "y").mkdir()
    os.symlink("/etc", root / "y" / "etc")  # planted on the host directly
    with drill.stack.client() as c:

        def run(name: str, step: dict[str, object]) -> tuple[str, str | None, list[str]]:
            job = c.submit_spec({"name": name, "steps": [step]}).wait(60)
            return job.status, job.error, [entry["line"] for entry in job.logs()]

        plant = docker_step(
            "ln -s / /x/root && echo planted",
            {"source": str(root / "x"), "target": "/x", "read_only": False},
        )
        assert run("plant", plant)[:2] == ("completed", None)
        assert os.readlink(root / "x" / "root") == "/"

        escape = docker_step("ls /host", {"source": str(root / "x" / "root"), "target": "/host"})
        status, error, logs = run("escape", escape)
        assert status == "failed"
        assert "MountRefused" in (error or "")
        assert f"symbolic link {root / 'x' / 'root'} -> /" in (error or "")
        assert "etc" not in logs  # the host's / was never listed

        planted = docker_step("ls /etc", {"source": str(root / "y" / "etc"), "target": "/etc2"})
        status, error, _ = run("host-link", planted)
        assert status == "failed" and "symbolic link" in (error or "")

        # A folder holding a link is fine: inside the container the link
        # resolves in the container's own file system, not the host's.
        holder = docker_step(
            "cat /y/etc/hostname >/dev/null && readlink /y/etc",
            {"source": str(root / "y"), "target": "/y"},
        )
        status, error, logs = run("holder", holder)
        assert (status, error) == ("completed", None) and "/etc" in logs


def test_a_plain_folder_resolves_to_itself(root: Path) -> None:
    assert resolve_mount_source(str(root / "x") + "/", [str(root)]) == str(root / "x")
    assert resolve_mount_source(str(root), [str(root) + "/"]) == str(root)


@pytest.mark.parametrize(
    ("make", "source", "fragment"),
    [
        # a link to the host's / below the root
        (lambda r: os.symlink("/", r / "x" / "up"), "x/up", "links below a mount root"),
        # a link even to another folder inside the root: any link could be repointed
        (lambda r: os.symlink(r / "x", r / "same"), "same", "symbolic link"),
        # a link in the middle of the path
        (lambda r: os.symlink("/tmp", r / "x" / "t"), "x/t/sub", "symbolic link"),
        (lambda r: None, "x/missing", "does not exist on this worker's host"),
    ],
)
def test_sources_through_links_or_missing_are_refused(
    root: Path, make: object, source: str, fragment: str
) -> None:
    make(root)  # type: ignore[operator]
    with pytest.raises(MountRefused) as info:
        resolve_mount_source(str(root / source), [str(root)])
    assert fragment in str(info.value)


def test_a_root_given_through_a_link_is_refused_naming_its_real_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    os.symlink(real, tmp_path / "alias")
    with pytest.raises(MountRefused) as info:
        resolve_mount_source(str(tmp_path / "alias" / "data"), [str(tmp_path / "alias")])
    assert f"by its real path ({real})" in str(info.value)


@pytest.mark.parametrize("source", ["/etc", "{root}-evil/x", "relative/x", "{root}/../x"])
def test_sources_outside_the_roots_are_refused(root: Path, source: str) -> None:
    (root.parent / "root-evil" / "x").mkdir(parents=True)
    (root.parent / "x").mkdir()
    with pytest.raises(MountRefused, match="outside this worker's JOBSYS_DOCKER_MOUNT_ROOTS"):
        resolve_mount_source(source.format(root=root), [str(root)])
