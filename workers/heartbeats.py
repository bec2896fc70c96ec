"""Each worker's Celery heartbeat (every 2 s) also lands in jobsys's worker
list, with its queues, concurrency and isolation of function steps, so the
Workers page and the dashboard read one Redis hash instead of waiting on
Celery's inspect (a broadcast that waits out its whole timeout), and a worker
that dies shows as lost within seconds."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import celeryd_after_setup, heartbeat_sent
from celery.worker import state

from jobsys import service
from jobsys.broker.canvas import PYTHON_QUEUE
from workers.context import worker_context
from workers.sandbox.isolation import probe

log = logging.getLogger(__name__)

#: What this worker consumes, learnt when it is set up (before its first heartbeat).
_identity: dict[str, Any] = {"queues": [], "concurrency": None, "isolation": None}


@celeryd_after_setup.connect
def _set_up(sender: Any = None, instance: Any = None, **_: Any) -> None:
    if instance is not None:
        _identity["queues"] = sorted(instance.app.amqp.queues.consume_from or ())
        _identity["concurrency"] = getattr(instance, "concurrency", None)
        if PYTHON_QUEUE in _identity["queues"]:
            _identity["isolation"] = _say_isolation()


def _say_isolation() -> tuple[str, str]:
    """Probe the sandbox once and say at start what function steps will get."""
    found = probe(worker_context().settings)
    if found.state == "on":
        log.info("isolation on: %s", found.why)
    elif found.state == "off":
        log.warning("isolation off: %s", found.why)
    else:
        log.error("isolation unavailable, function steps will fail: %s", found.why)
    return found.state, found.why


@heartbeat_sent.connect
def _beat(sender: Any = None, **_: Any) -> None:
    hostname = getattr(getattr(sender, "eventer", None), "hostname", None)
    if hostname:
        service.record_heartbeat(
            worker_context(),
            hostname,
            active=len(state.active_requests),
            processed=state.all_total_count[0],
            queues=_identity["queues"],
            concurrency=_identity["concurrency"],
            isolation=_identity["isolation"],
        )
