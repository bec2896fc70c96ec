"""Revokes that come from outside jobsys (Flower, ``celery control revoke``).

Celery keeps revokes in worker memory and says nothing to the application,
and ``terminate=True`` kills the worker's child but leaves a Docker container
running (celery/celery#1106). Here a revoked jobsys task cancels its job, and
the job's containers are reaped at once rather than at the next beat tick.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_revoked

from jobsys import service
from jobsys.broker.canvas import RUN_DOCKER_STEP, RUN_FUNCTION_CHUNK
from workers.context import worker_context
from workers.housekeeping import reap_orphan_containers

log = logging.getLogger(__name__)

#: Tasks with a TaskRun record; the chord callback and housekeeping have none.
_JOB_TASKS = frozenset({RUN_DOCKER_STEP, RUN_FUNCTION_CHUNK})


@task_revoked.connect
def _cancel_revoked_job(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    if getattr(sender, "name", None) not in _JOB_TASKS or request is None:
        return
    try:
        job_id = service.cancel_for_revoked_task(
            worker_context(), request.id, terminated=bool(terminated)
        )
    except Exception:  # a signal handler must not take the worker's loop down
        log.exception("could not reflect the revoke of task %s in its job", request.id)
        return
    if job_id is None:
        return
    log.info("job %s cancelled: its task %s was revoked", job_id, request.id)
    if sender.name == RUN_DOCKER_STEP:
        # The killed child cannot stop its container; a Docker worker reaps it.
        reap_orphan_containers.apply_async(ignore_result=True)
