"""Each worker's Celery heartbeat (every 2 s) also lands in jobsys's worker
list, so a worker that dies shows as lost on the Workers page within seconds."""

from __future__ import annotations

from typing import Any

from celery.signals import heartbeat_sent
from celery.worker import state

from jobsys import service
from workers.context import worker_context


@heartbeat_sent.connect
def _beat(sender: Any = None, **_: Any) -> None:
    hostname = getattr(getattr(sender, "eventer", None), "hostname", None)
    if hostname:
        service.record_heartbeat(
            worker_context(),
            hostname,
            active=len(state.active_requests),
            processed=state.all_total_count[0],
        )
