"""Docker steps on a live stack: submit over HTTP, wait, read the logs, find
the containers by the job's label."""

from __future__ import annotations

from typing import Any

from jobsys.testing import containers_of
from tests.support.live import LiveStack
from tests.support.services import BUSYBOX_IMAGE

__all__ = ["containers_of", "finished", "lines", "step", "submit"]


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
