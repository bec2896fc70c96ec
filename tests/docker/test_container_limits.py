"""Container limits and log caps (issue 14, item 14).

A container gets the step's memory and CPUs and a bounded json-file log on the
engine; what jobsys stores of its output is cut per line and per step, with a
line saying what was not stored. The caps are checked first on a stand-in for
the engine's log stream (fast, exact), then on the engine itself.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from jobsys.config import Settings
from jobsys.errors import StepFailed
from jobsys.specs import DockerStep
from tests.support.docker import containers_of, finished, submit
from tests.support.docker import step as docker_step
from tests.support.live import LiveStack, wait_until
from tests.support.services import BUSYBOX_IMAGE
from workers.container_logs import (
    MAX_LOG_LINES,
    STREAMS,
    LogLimits,
    Seen,
    followed_logs,
    read_logs,
    start_follower,
)
from workers.containers import (
    LABEL_JOB,
    LABEL_STEP,
    LABEL_TASK,
    Limits,
    remove_containers,
    run_container,
)
from workers.docker_step import limits_of


def stamp(n: int) -> bytes:
    return f"2026-12-01T10:00:{n // 1000:02d}.{n % 1000:03d}000001Z".encode()


class Logged:
    """Stands in for a container: ``logs()`` yields each stream's bytes in small chunks."""

    def __init__(
        self, stdout: list[tuple[int, bytes]], stderr: list[tuple[int, bytes]] | None = None
    ):
        self.streams = {
            "stdout": b"".join(stamp(n) + b" " + text + b"\n" for n, text in stdout),
            "stderr": b"".join(stamp(n) + b" " + text + b"\n" for n, text in stderr or []),
        }

    def logs(self, *, stdout: bool, stderr: bool, **_: Any) -> Iterator[bytes]:
        data = self.streams["stdout" if stdout else "stderr"]
        # Chunk edges fall anywhere, in the middle of lines and of timestamps.
        return (data[i : i + 7] for i in range(0, len(data), 7))


def test_lines_are_cut_to_the_line_limit_saying_how_much() -> None:
    long = "é" * 1000  # two bytes each: the cut must not leave half a character
    logs = read_logs(Logged([(1, long.encode()), (2, b"short")]), LogLimits(line_bytes=101))
    assert [r.line for r in logs] == [
        "é" * 50 + " [jobsys: line cut at 101 bytes; 1,899 more not stored]",
        "short",
    ]


def test_a_step_keeps_the_last_of_its_log_after_a_line_saying_what_was_cut() -> None:
    out = [(2 * n, f"out {n:04d}".encode() + b"x" * 92) for n in range(1000)]  # 100 bytes
    err = [(2 * n + 1, f"err {n:04d}".encode() + b"y" * 92) for n in range(1000)]
    logs = read_logs(Logged(out, err), LogLimits(total_bytes=10_000))
    marker, *kept = logs
    assert len(kept) == 100 and sum(len(r.line) for r in kept) == 10_000
    assert kept[0].line.startswith("out 0950") and kept[-1].line.startswith("err 0999")
    assert [r.stream for r in kept[:2]] == ["stdout", "stderr"]  # in time order
    assert marker.stream == "system"
    assert marker.line == (
        "[jobsys: 1,900 earlier lines (185.5 KiB) not stored: a step's log keeps its last "
        f"9.8 KiB and {MAX_LOG_LINES:,} lines (JOBSYS_DOCKER_MAX_LOG_BYTES)]"
    )


def test_the_marker_counts_lines_docker_rotated_away() -> None:
    """The followers saw every line; the stored copy, read after exit, only what
    Docker's bounded log file still held."""
    logs = read_logs(
        Logged([(n, b"kept") for n in range(10)]),
        LogLimits(),
        {"stdout": Seen(lines=1010, bytes=1040, done=True), "stderr": Seen(done=True)},
    )
    assert logs[0].line.startswith("[jobsys: 1,000 earlier lines (1,000 bytes) not stored")
    assert [r.line for r in logs[1:]] == ["kept"] * 10
    unsure = read_logs(Logged([(1, b"a")]), LogLimits(), {"stdout": Seen(lines=5, bytes=5)})
    assert unsure[0].line.startswith("[jobsys: at least 4 earlier lines")


def test_what_the_followers_kept_is_the_log_read_after_exit() -> None:
    """The stored copy comes from the followers when both read to the end: the
    same lines, order and marker that reading the log again would give."""
    out = [(2 * n, f"out {n:04d}".encode() + b"x" * 92) for n in range(1000)]
    err = [(2 * n + 1, f"err {n:04d}".encode() + b"y" * 92) for n in range(300)]
    container, limits = Logged(out, err), LogLimits(line_bytes=50, total_bytes=10_000)
    seen = {stream: Seen() for stream in STREAMS}
    live: list[str] = []
    for follower in [
        start_follower(container, s, limits, seen[s], lambda r: live.append(r.line))
        for s in STREAMS
    ]:
        follower.join(timeout=30)
    followed = followed_logs(seen, limits)
    assert followed is not None and len(live) == 1300
    assert followed == read_logs(container, limits, seen)
    assert followed[0].line.startswith("[jobsys: 1,100 earlier lines")
    seen["stderr"].done = False  # a follower that stopped early: read the log again
    assert followed_logs(seen, limits) is None


def test_a_line_without_end_costs_only_the_line_limit() -> None:
    class Endless:
        def logs(self, *, stdout: bool, **_: Any) -> Iterator[bytes]:
            if stdout:
                yield stamp(0) + b" "
                for _ in range(64):
                    yield b"z" * (1 << 20)  # 64 MiB, no newline ever

    (only,) = read_logs(Endless(), LogLimits(line_bytes=16))
    assert (
        only.line
        == "z" * 16 + f" [jobsys: line cut at 16 bytes; {(64 << 20) - 16:,} more not stored]"
    )


def test_a_log_within_its_limits_is_stored_whole_with_no_marker() -> None:
    logs = read_logs(Logged([(1, b"a"), (3, b"")], [(2, b"b")]), LogLimits(), {})
    assert [(r.stream, r.line) for r in logs] == [("stdout", "a"), ("stderr", "b"), ("stdout", "")]


def test_the_workers_settings_become_its_limits() -> None:
    settings = Settings(docker_max_log_line_bytes=100, docker_max_log_bytes=5000)
    assert limits_of(settings) == Limits("512m", 1.0, LogLimits(100, 5000))
    config = LogLimits().docker_log()
    assert (config.type, config.config) == ("json-file", {"max-size": "28m", "max-file": "2"})


@pytest.mark.integration
@pytest.mark.docker
def test_the_container_gets_its_limits_and_a_bounded_docker_log() -> None:
    """While the container runs, the engine's own record of it shows the step's
    memory and CPUs and a json-file log with max-size and max-file; what comes
    back is cut by the step's caps."""
    job = f"limits-{uuid.uuid4().hex[:8]}"
    step = DockerStep(
        image=BUSYBOX_IMAGE,
        command=(
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line-$i-..........; "
            "i=$((i+1)); done; echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
            "echo end; sleep 1",
        ),
        timeout_s=60,
        mem_limit="64m",
        cpus=0.5,
    )
    seen: list[dict[str, Any]] = []
    with contextlib.closing(docker.from_env()) as client:

        def inspect_once() -> bool:
            if not seen:
                (running,) = client.containers.list(filters={"label": f"{LABEL_JOB}={job}"})
                seen.append(running.attrs["HostConfig"])
            return False

        live: list[str] = []
        result = run_container(
            client,
            step,
            labels={LABEL_JOB: job},
            limits=Limits("512m", 1.0, LogLimits(line_bytes=40, total_bytes=2000)),
            should_stop=inspect_once,
            on_output=lambda record: live.append(record.line),
        )
    (host,) = seen
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "8m", "max-file": "2"}}
    assert result.exit_code == 0
    marker, *kept = result.logs
    assert marker.stream == "system" and "earlier lines" in marker.line
    assert sum(len(r.line) for r in kept[:-2]) <= 2000
    assert kept[-1].line == "end"
    assert kept[-2].line == "x" * 40 + " [jobsys: line cut at 40 bytes; 20 more not stored]"
    # Marker and kept lines add up to every line the container wrote.
    assert int(marker.line.split()[1].replace(",", "")) + len(kept) == 302
    assert len(live) == 302 and live[-2] == kept[-2].line  # the live view: all, each cut


@pytest.mark.integration
@pytest.mark.docker
def test_a_step_that_sets_no_limits_gets_the_documented_defaults(stack: LiveStack) -> None:
    """README and SECURITY.md: a container runs with at most 512 processes, no
    new privileges, no network, the default memory (512m) and CPUs (1.0), and
    labels naming its job, step and task. Read from the engine while it runs."""
    assert (Settings().docker_default_mem_limit, Settings().docker_default_cpus) == ("512m", 1.0)
    # Waits for the test to let it finish, so it is inspected while it runs.
    script = "echo up; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo done"
    job_id = submit(stack, docker_step(script))
    wait_until(lambda: containers_of(job_id), 60, "the container to start")
    (container,) = containers_of(job_id)
    out = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    )
    (seen,) = json.loads(out.stdout)
    subprocess.run(
        ["docker", "exec", container, "sh", "-c", ": > /tmp/go"], check=True, capture_output=True
    )
    job = finished(stack, job_id)
    assert job["status"] == "completed", job["error"]
    host = seen["HostConfig"]
    assert host["PidsLimit"] == 512
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False and host["NetworkMode"] == "none"
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["NanoCpus"] == 1_000_000_000
    with stack.http() as http:
        (task,) = http.get(f"/api/jobs/{job_id}/tasks").json()["tasks"]
    (step_id,) = [s["id"] for s in job["steps"]]
    labels = {k: v for k, v in seen["Config"]["Labels"].items() if k.startswith("jobsys.")}
    assert labels == {LABEL_JOB: job_id, LABEL_STEP: step_id, LABEL_TASK: task["id"]}


@pytest.mark.docker
def test_a_container_left_for_later_has_its_output_read_and_goes_when_removed() -> None:
    """With ``leftovers`` the container outlives run_container (its removal waits
    until the step is reported) with its output already read; on an error it is
    removed at once."""
    job = f"later-{uuid.uuid4().hex[:8]}"
    step = DockerStep(image=BUSYBOX_IMAGE, command=("sh", "-c", "echo done"), timeout_s=60)
    limits = Limits("512m", 1.0)
    left: list[Any] = []
    with contextlib.closing(docker.from_env()) as client:
        try:
            result = run_container(
                client, step, labels={LABEL_JOB: job}, limits=limits, leftovers=left
            )
            assert [r.line for r in result.logs] == ["done"] and result.exit_code == 0
            assert [c.id for c in left] and containers_of(job) == [c.short_id for c in left]
            remove_containers(left)
            assert containers_of(job) == []
            bad = DockerStep(image=BUSYBOX_IMAGE, command=("/no/such/program",), timeout_s=60)
            with pytest.raises(StepFailed):
                run_container(client, bad, labels={LABEL_JOB: job}, limits=limits, leftovers=left)
            assert len(left) == 1 and containers_of(job) == []
        finally:
            subprocess.run(
                f"docker ps -aq --filter label={LABEL_JOB}={job} | xargs -r docker rm -f",
                shell=True,
                capture_output=True,
            )
