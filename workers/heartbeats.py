"""Each worker's Celery heartbeat (every 2 s) also lands in jobsys's worker
list, with its queues and concurrency, so the Workers page and the dashboard
read one Redis hash instead of waiting on Celery's inspect (a broadcast that
waits out its whole timeout), and a worker that dies shows as lost within
seconds."""

from __future__ import annotations

from typing import Any

from celery.signals import heartbeat_sent, worker_ready
from celery.worker import state

from jobsys import service
from workers.context import worker_context

#: What this worker consumes, learnt once it is ready.
_identity: dict[str, Any] = {"queues": [], "concurrency": None}


@worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    consumer = getattr(sender, "task_consumer", None)
    _identity["queues"] = sorted(q.name for q in getattr(consumer, "queues", None) or [])
    _identity["concurrency"] = getattr(getattr(sender, "controller", None), "concurrency", None)


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
        )
