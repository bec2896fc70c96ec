"""Flower as one of a live stack's processes: started with the command a test
names (the ways a user starts it differ on purpose), waited for until its
/healthcheck answers, stopped when the test is done."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx

from tests.support.live import CELERY, JOBSYS, LiveStack, free_port, wait_until

#: ``jobsys flower``: Flower with the jobsys app and its settings.
JOBSYS_CLI = (*JOBSYS, "flower")
#: Flower as Celery's own CLI starts it, against the same app.
CELERY_CLI = (*CELERY, "flower")
#: The Flower the web app's /flower proxy talks to (give it ``url_prefix="flower"``).
BEHIND_PROXY = (sys.executable, "-m", "jobsys.flower")


@contextmanager
def running_flower(
    stack: LiveStack, command: Sequence[str], *, url_prefix: str = "", **env: str
) -> Iterator[str]:
    """Start ``command`` on a free port as a process of ``stack`` (``env`` on top
    of the stack's environment), yield its base URL (with the prefix, if any)
    once /healthcheck answers 200, and stop it afterwards."""
    port = free_port()
    name = f"flower-{port}"
    argv = [*command, "--address=127.0.0.1", f"--port={port}"]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix}")
    proc = stack.spawn(name, argv, **env)
    url = f"http://127.0.0.1:{port}" + (f"/{url_prefix}" if url_prefix else "")

    def answers() -> bool:
        if proc.poll() is not None:
            return True  # no use waiting: said below
        try:
            return httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, 60, f"Flower ({' '.join(command[1:])})")
        if proc.poll() is not None:
            raise AssertionError(f"Flower exited with {proc.returncode}:\n{stack.log(name)}")
        yield url
    finally:
        stack.processes.pop(name, None)
        proc.terminate()
        proc.wait(timeout=15)
