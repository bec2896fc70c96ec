"""Whether this worker can isolate function steps, said once at its start.

A worker set to ``JOBSYS_SANDBOX=on`` that cannot start a sandbox (no
bubblewrap, no user namespaces in a container, an unknown sandbox user) does
not fall back to running user code next to its credentials: it says why at
start, its heartbeat reports ``isolation: unavailable``, and each function
chunk fails with the same reason. Only ``JOBSYS_SANDBOX=off``, the operator's
own choice, runs them unisolated, and that too is reported (``off``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from jobsys.config import Settings
from workers.sandbox.chunks import new_sandbox
from workers.sandbox.launcher import bwrap_path
from workers.sandbox.runner import SandboxError


@dataclass(frozen=True)
class Isolation:
    #: ``on``, ``off`` (the operator chose it) or ``unavailable`` (wanted, not possible).
    state: str
    why: str


def probe(settings: Settings) -> Isolation:
    """Start (and stop) one sandbox as a chunk would get it; about 80 ms."""
    if settings.sandbox == "off":
        return Isolation(
            "off",
            "JOBSYS_SANDBOX=off: function steps run in the worker's own process, which "
            "holds jobsys's keys and database access",
        )
    if bwrap_path() is None:
        return Isolation(
            "unavailable",
            "bubblewrap (bwrap) is not installed: install Debian's bubblewrap, or set "
            "JOBSYS_SANDBOX=off to run function steps unisolated",
        )
    began = time.monotonic()
    try:
        box = new_sandbox(settings)
        box.start()
    except (SandboxError, ValueError) as exc:
        return Isolation("unavailable", f"{exc}; or set JOBSYS_SANDBOX=off to run unisolated")
    box.close()
    took = (time.monotonic() - began) * 1000
    return Isolation(
        "on", f"function steps run in a bubblewrap sandbox as {box.user.name} ({took:.0f} ms)"
    )


__all__ = ["Isolation", "probe"]
