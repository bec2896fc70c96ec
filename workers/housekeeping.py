"""Periodic housekeeping tasks fired by the entries in ``beat_schedule.py``."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from jobsys import service
from jobsys.broker.canvas import (
    DOCKER_QUEUE,
    PURGE_HISTORY,
    REAP_ORPHANS,
    SWEEP_LOST_TASKS,
    SWEEP_OUTBOX,
)
from jobsys.errors import StepError
from workers.containers import docker_client, reap_orphans
from workers.context import worker_context

log = logging.getLogger(__name__)


@shared_task(name=SWEEP_OUTBOX)
def sweep_outbox() -> int:
    return service.sweep_outbox(worker_context())


@shared_task(name=SWEEP_LOST_TASKS)
def sweep_lost_tasks() -> dict[str, list[str]]:
    return service.sweep_lost_tasks(worker_context()).to_dict()


@shared_task(name=PURGE_HISTORY)
def purge_history() -> dict[str, int]:
    purged = service.purge_history(worker_context())
    return {"jobs": purged.jobs, "schedule_runs": purged.schedule_runs}


@shared_task(name=REAP_ORPHANS)
def reap_orphan_containers() -> int:
    ctx = worker_context()
    with contextlib.closing(docker_client()) as client:
        return reap_orphans(client, functools.partial(service.ended_job_ids, ctx))


@worker_ready.connect
def _reap_at_start(sender: Any = None, **_: Any) -> None:
    """A Docker worker starting up clears what a previous one left behind."""
    consumed = set(sender.app.amqp.queues.consume_from or {}) if sender else set()
    if DOCKER_QUEUE not in consumed:
        return
    try:
        reaped = reap_orphan_containers.run()
    except StepError as exc:  # no engine here: nothing to reap
        log.warning("orphan reaper skipped: %s", exc)
        return
    if reaped:
        log.info("removed %d orphaned job containers", reaped)
