"""Docker steps on a live stack: submit over HTTP, wait, read the logs, find
the containers by the job's label."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.support.live import LiveStack
from tests.support.services import BUSYBOX_IMAGE


def submit(stack: LiveStack, *steps: dict[str, Any], name: str = "docker") -> str:
    with stack.http() as http:
        r = http.post("/api/jobs", json={"name": name, "steps": list(steps)})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])


def step(script: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "docker",
        "image": BUSYBOX_IMAGE,
        "command": ["sh", "-c", script],
        "timeout_s": 30,
        **extra,
    }


def finished(stack: LiveStack, job_id: str, timeout: float = 60) -> dict[str, Any]:
    with stack.client() as c:
        return c.job(job_id).wait(timeout=timeout).data


def lines(stack: LiveStack, job_id: str, stream: str | None = None) -> list[str]:
    with stack.http() as http:
        logs = http.get(f"/api/jobs/{job_id}/logs").json()["logs"]
    return [e["line"] for e in logs if stream is None or e["stream"] == stream]


def containers_of(job_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=jobsys.job={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()
