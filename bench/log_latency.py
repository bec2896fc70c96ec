"""make bench: time from a line written in a container to an SSE client.

Each line's send time is the Docker engine's own timestamp for it (busybox
``date`` has no sub-second format). Baseline: ``docker logs --follow
--timestamps`` on the same kind of container, read straight from the engine.
jobsys: the same container as a Docker step, read through
``GET /api/jobs/<id>/events`` with the Python client. Target: p95 < 300 ms.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import datetime

from bench.stack import bench_stack
from jobsys.testing import LiveStack

LINES = 200
IMAGE = "jobsys/busybox:local"
#: 200 lines over about 6 s, so each is read live, not replayed.
SCRIPT = f"sleep 1; for i in $(seq 1 {LINES}); do echo line $i; sleep 0.025; done"


def _engine_ts(text: str) -> float:
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def baseline() -> list[float]:
    cid = subprocess.run(
        ["docker", "run", "-d", "--network", "none", IMAGE, "sh", "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    delays = []
    with subprocess.Popen(
        ["docker", "logs", "--follow", "--timestamps", cid], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            delays.append(time.time() - _engine_ts(raw.partition(" ")[0]))
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=True)
    return delays


def through_jobsys(stack: LiveStack) -> list[float]:
    spec = {
        "name": "log-latency",
        "steps": [
            {
                "kind": "docker",
                "image": IMAGE,
                "command": ["sh", "-c", SCRIPT],
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
                delays.append(time.time() - sent)
    return delays


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    with bench_stack() as stack:
        base = baseline()
        ours = through_jobsys(stack)
    if len(ours) != LINES or len(base) != LINES:
        print(f"lines lost: baseline {len(base)}, jobsys {len(ours)} of {LINES}")
        return 1
    print(f"log line in a container -> reader, {LINES} lines")
    print(
        f"  docker logs --follow (baseline): median {statistics.median(base) * 1000:.1f} ms, "
        f"p95 {p95(base) * 1000:.1f} ms"
    )
    print(
        f"  jobsys SSE:                      median {statistics.median(ours) * 1000:.1f} ms, "
        f"p95 {p95(ours) * 1000:.1f} ms, max {max(ours) * 1000:.1f} ms, "
        f"p95 ratio {p95(ours) / p95(base):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
