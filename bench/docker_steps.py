"""Docker rows: a ``busybox true`` step, cancel, and a log line's way to a
live reader. The baseline of each is the same container handled straight on
the engine; tries alternate between the two sides, so a busy neighbour hurts
both alike.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from datetime import datetime

import docker

from bench.env import JobsysStack
from bench.results import Row, percentile
from jobsys.testing import containers_of, wait_until

IMAGE = "jobsys/busybox:local"


def sdk_true(engine: docker.DockerClient) -> float:
    started = time.perf_counter()
    container = engine.containers.run(IMAGE, ["true"], detach=True, network_mode="none")
    container.wait(timeout=60)
    container.remove()
    return time.perf_counter() - started


def jobsys_true(stack: JobsysStack) -> float:
    with stack.client() as client:
        started = time.perf_counter()
        job = client.run_docker(IMAGE, ["true"], timeout_s=60).wait(timeout=90)
        took = time.perf_counter() - started
    if job.status != "completed":
        raise AssertionError(f"docker step {job.status}: {job.error}")
    return took


def docker_step_row(stack: JobsysStack, tries: int) -> Row:
    engine = docker.from_env()
    try:
        sdk_true(engine), jobsys_true(stack)  # pull nothing, warm both
        base, ours = [], []
        for _ in range(tries):
            base.append(sdk_true(engine))
            ours.append(jobsys_true(stack))
    finally:
        engine.close()
    return Row(
        "docker step busybox true",
        "s",
        1.10,
        base,
        ours,
        f"submit to completed; baseline = docker SDK run+wait+remove; {tries} tries each",
    )


# -- cancel ---------------------------------------------------------------------


def stop_by_hand() -> float:
    cid = subprocess.run(
        ["docker", "run", "-d", "--network", "none", IMAGE, "sh", "-c", "sleep 60"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    started = time.perf_counter()
    subprocess.run(["docker", "stop", "-t", "1", cid], capture_output=True, check=True)
    subprocess.run(["docker", "rm", cid], capture_output=True, check=True)
    return time.perf_counter() - started


def cancel_through_jobsys(stack: JobsysStack) -> float:
    """``sh`` as PID 1 ignores SIGTERM, so both sides wait out the 1 s grace."""
    spec = {
        "name": "cancel-bench",
        "steps": [
            {
                "kind": "docker",
                "image": IMAGE,
                "command": ["sh", "-c", "sleep 60"],
                "timeout_s": 120,
                "stop_grace_s": 1,
            }
        ],
    }
    with stack.client() as client:
        job = client.submit_spec(spec)
        wait_until(lambda: containers_of(job.id), 60, "the container")
        started = time.perf_counter()
        client.cancel(job.id)
        deadline = time.monotonic() + 60
        while containers_of(job.id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job.id}'s container still there 60 s after cancel")
            time.sleep(0.02)
        return time.perf_counter() - started


def cancel_row(stack: JobsysStack, tries: int) -> Row:
    base, ours = [], []
    for _ in range(tries):
        base.append(stop_by_hand())
        ours.append(cancel_through_jobsys(stack))
    return Row(
        "cancel running docker step",
        "s",
        1.3,
        base,
        ours,
        "cancel request to container gone, 1 s grace; baseline = docker stop -t 1 + rm",
    )


# -- log line to a live reader ------------------------------------------------------


def _script(lines: int) -> str:
    # Lines over several seconds, so each is read live, not replayed.
    return f"sleep 1; for i in $(seq 1 {lines}); do echo line $i; sleep 0.025; done"


def _engine_ts(text: str) -> float:
    """The Docker engine's own timestamp of a line (busybox ``date`` has no sub-second format)."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def logs_by_hand(lines: int) -> list[float]:
    cid = subprocess.run(
        ["docker", "run", "-d", "--network", "none", IMAGE, "sh", "-c", _script(lines)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    delays = []
    try:
        with subprocess.Popen(
            ["docker", "logs", "--follow", "--timestamps", cid], stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                delays.append((time.time() - _engine_ts(raw.partition(" ")[0])) * 1000)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return delays


def logs_through_jobsys(stack: JobsysStack, lines: int) -> list[float]:
    spec = {
        "name": "log-latency",
        "steps": [
            {
                "kind": "docker",
                "image": IMAGE,
                "command": ["sh", "-c", _script(lines)],
                "timeout_s": 120,
            }
        ],
    }
    delays = []
    with stack.client() as client:
        job = client.submit_spec(spec)
        for event in job.events():
            if event["event"] == "log" and event["data"]["stream"] == "stdout":
                sent = datetime.fromisoformat(event["data"]["ts"]).timestamp()
                delays.append((time.time() - sent) * 1000)
    return delays


#: A log line reaches a live reader within this, p95 (the engine's own
#: ``docker logs --follow`` is a few ms; a person watching notices ~100 ms).
LOG_P95_LIMIT_MS = 50.0


def log_row(stack: JobsysStack, lines: int, reps: int) -> Row:
    base, ours = [], []
    for _ in range(reps):
        by_hand, through = logs_by_hand(lines), logs_through_jobsys(stack, lines)
        for got, side in ((by_hand, "docker logs"), (through, "jobsys SSE")):
            if len(got) != lines:
                raise AssertionError(f"{side} read {len(got)} of {lines} lines")
        base.append(percentile(by_hand, 95))
        ours.append(percentile(through, 95))
    return Row.absolute_limit(
        "log line to SSE reader p95",
        "ms",
        LOG_P95_LIMIT_MS,
        ours,
        f"absolute: PASS when p95 < {LOG_P95_LIMIT_MS:.0f} ms from the engine's timestamp to "
        f"GET /api/jobs/<id>/events; docker logs --follow p95 {statistics.median(base):.1f} ms; "
        f"{lines} lines per rep",
    )
