"""The live stack for tests (``jobsys.testing``), where a missing service is a
skip on a developer's machine and a failure in CI (``services.missing``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    "private_stack",
    "run_in",
    "start_stack",
    "wait_until",
    "worker_argv",
]


def private_stack(tmp: Path, name: str, **settings: Any) -> Iterator[tuple[LiveStack, RedisServer]]:
    """A stack (web app, one worker ``it-<name>``) on a SQLite file in ``tmp``
    and a redis-server of its own on a free port, which a test may stop and
    start; ``settings`` are Settings fields for every process."""
    server = RedisServer(free_port(), tmp)
    server.start()
    try:
        db = f"sqlite:///{tmp / 'jobsys.db'}"
        for stack in start_stack(name, db, server.url, tmp, **settings):
            yield stack, server
    finally:
        server.stop()


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
