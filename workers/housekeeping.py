"""Periodic housekeeping tasks fired by the entries in ``beat_schedule.py``."""

from __future__ import annotations

from celery import shared_task

from jobsys import service
from jobsys.canvas import SWEEP_OUTBOX
from workers.context import worker_context


@shared_task(name=SWEEP_OUTBOX)
def sweep_outbox() -> int:
    return service.sweep_outbox(worker_context())
