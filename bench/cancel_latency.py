"""make bench: time from a cancel request to the container being gone.

Baseline: ``docker stop -t 1`` + ``docker rm`` of the same kind of container
straight on the engine. jobsys: ``POST /api/jobs/<id>/cancel`` on a running
Docker step with ``stop_grace_s`` 1, until no container with the job's label
is left. ``sh`` as PID 1 ignores SIGTERM, so both wait out the 1 s grace.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench.stack import bench_stack
from jobsys.testing import LiveStack, containers_of, wait_until

TRIES = 20
IMAGE = "jobsys/busybox:local"


def baseline() -> float:
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


def through_jobsys(stack: LiveStack) -> float:
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
    with stack.http() as http:
        job_id = http.post("/api/jobs", json=spec).json()["id"]
        wait_until(lambda: containers_of(job_id), 30, "the container")
        started = time.perf_counter()
        assert http.post(f"/api/jobs/{job_id}/cancel").status_code == 200
        while containers_of(job_id):
            time.sleep(0.02)
        return time.perf_counter() - started


def main() -> int:
    with bench_stack() as stack:
        base = [baseline() for _ in range(5)]
        ours = [through_jobsys(stack) for _ in range(TRIES)]
    print(f"cancel -> container gone, grace 1 s, {TRIES} tries")
    print(
        f"  docker stop+rm (baseline): median {statistics.median(base):.2f} s, "
        f"worst {max(base):.2f} s"
    )
    print(
        f"  jobsys cancel:             median {statistics.median(ours):.2f} s, "
        f"worst {max(ours):.2f} s, ratio {statistics.median(ours) / statistics.median(base):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
