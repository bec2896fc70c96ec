"""The live stack for tests (``jobsys.testing``), where a missing service is a
skip on a developer's machine and a failure in CI (``services.missing``)."""

from __future__ import annotations

from jobsys import testing
from jobsys.testing import SECRET, LiveStack, ServiceMissing, free_port, start_stack, wait_until
from tests.support.services import missing

__all__ = ["SECRET", "LiveStack", "RedisServer", "free_port", "start_stack", "wait_until"]


class RedisServer(testing.RedisServer):
    def start(self) -> None:
        try:
            super().start()
        except ServiceMissing as exc:
            missing(exc.what, exc.how)
