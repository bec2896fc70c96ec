"""The live stack for tests (``jobsys.testing``), where a missing service is a
skip on a developer's machine and a failure in CI (``services.missing``)."""

from __future__ import annotations

import subprocess
import sys

from jobsys import testing
from jobsys.testing import SECRET, LiveStack, ServiceMissing, free_port, start_stack, wait_until
from tests.support.services import missing

__all__ = [
    "CELERY",
    "JOBSYS",
    "SECRET",
    "LiveStack",
    "RedisServer",
    "free_port",
    "run_in",
    "start_stack",
    "wait_until",
    "worker_argv",
]


#: ``jobsys ...`` and ``celery -A jobsys.celery_app ...`` as commands to extend.
JOBSYS = (sys.executable, "-m", "jobsys.cli")
CELERY = (sys.executable, "-m", "celery", "-A", "jobsys.celery_app")


def run_in(stack: LiveStack, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command in the stack's environment, as an operator on its machine
    would, its output captured as text (the caller checks the exit code)."""
    return subprocess.run(
        argv, env=stack.env, capture_output=True, text=True, timeout=timeout, check=False
    )


def worker_argv(node: str, *, queues: str = "python,docker", concurrency: int = 2) -> list[str]:
    """``celery worker`` for jobsys, as Celery node ``node`` (``name@%h``)."""
    return [
        *CELERY,
        "worker",
        *("-Q", queues, "-c", str(concurrency), "-n", node, "-l", "INFO"),
    ]


class RedisServer(testing.RedisServer):
    def start(self) -> None:
        try:
            super().start()
        except ServiceMissing as exc:
            missing(exc.what, exc.how)
