"""What the fault drills share: a private stack on its own redis-server with
short leases and visibility timeouts, extra workers to kill, and ways to see
what happened (task rows, container events, worker logs).

Drills set every timing short so that each takes seconds: a message is
redelivered 3 s after its worker stops hiding it, a lease runs out 1.5 s after
its run stops renewing it, and a task unaccounted for 3 s is lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from jobsys.store.models import Step, TaskRun
from tests.support.docker import containers_of
from tests.support.live import (
    LiveStack,
    RedisServer,
    private_stack,
    wait_until,
    worker_argv,
)

#: Settings of every process of a drill stack.
DRILL_SETTINGS: dict[str, Any] = {
    "broker_visibility_timeout_s": 3.0,
    "task_lease_ttl_s": 1.5,
    "lost_task_grace_s": 3.0,
    "lost_task_sweep_s": 1.0,
    "task_max_deliveries": 3,
}


@dataclass
class Drill:
    stack: LiveStack
    redis: RedisServer
    spares: int = 0

    @property
    def name(self) -> str:
        return self.stack.name

    def node(self, process: str) -> str:
        """The Celery node name prefix of a worker process of this stack."""
        return f"it-{self.name}@" if process == "worker" else f"{process}-{self.name}@"

    def process_of(self, node: str) -> str:
        """Which of our worker processes runs as Celery node ``node``."""
        for process in self.stack.processes:
            if node.startswith(self.node(process)):
                return process
        raise AssertionError(f"no process of this stack is node {node}")

    def spawn_worker(
        self, process: str, *, queues: str = "python,docker", concurrency: int = 2
    ) -> subprocess.Popen[bytes]:
        node = f"{process}-{self.name}@%h"
        proc = self.stack.spawn(process, worker_argv(node, queues=queues, concurrency=concurrency))
        # Its log says so at once; asking the cluster (inspect) takes seconds.
        wait_until(lambda: " ready." in self.stack.log(process), 60, f"worker {process}")
        return proc

    def spawn_beat(self) -> None:
        self.stack.spawn(
            "beat",
            [sys.executable, "-m", "celery", "-A", "jobsys.celery_app", "beat", "-l", "INFO"],
        )

    def ensure_workers(self, count: int) -> None:
        """Start spare workers until ``count`` worker processes are alive."""
        workers = [p for p in self.stack.processes if p not in ("web", "beat")]
        for _ in range(len(workers), count):
            self.spares += 1  # a fresh name: a killed worker's must not come back twice
            self.spawn_worker(f"spare{self.spares}")

    def kill(self, process: str) -> float:
        """SIGKILL a worker and all its pool processes; the moment it happened."""
        proc = self.stack.processes.pop(process)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return time.monotonic()

    def tasks(self, job_id: str) -> list[TaskRun]:
        with self.stack.ctx.sessions() as session:
            rows = session.scalars(
                select(TaskRun).where(TaskRun.job_id == job_id).order_by(TaskRun.item_start)
            ).all()
            session.expunge_all()
            return list(rows)

    def step(self, job_id: str) -> Step:
        with self.stack.ctx.sessions() as session:
            step = session.scalars(select(Step).where(Step.job_id == job_id)).one()
            session.expunge(step)
            return step

    def worker_logs(self) -> str:
        """Every worker's log, the killed ones' included."""
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted(self.stack.log_dir.glob("*.log"))
            if path.name not in ("web.log", "beat.log")
        )


def drill_stack(tmp: Path, name: str, **overrides: Any) -> Iterator[Drill]:
    """A stack (web app, one worker ``it-<name>``) on its own redis-server."""
    for stack, server in private_stack(tmp, name, **{**DRILL_SETTINGS, **overrides}):
        yield Drill(stack, server)


def containers_created(job_id: str, since: float) -> int:
    """How many containers the engine created for this job since ``since`` (epoch s)."""
    out = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{time.time():.3f}",
            "--filter",
            f"label=jobsys.job={job_id}",
            "--filter",
            "event=create",
            "--format",
            "{{.ID}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(out.stdout.split())


__all__ = ["DRILL_SETTINGS", "Drill", "containers_created", "containers_of", "drill_stack"]
