"""One delivery of a jobsys task: hold its lease, start it, or drop it.

Every task with a TaskRun record (a Docker step, a function chunk) runs
inside ``exclusive_run``. A delivery of a task that another live run holds
is dropped with Celery's ``Ignore``: acknowledged, not run, no result stored
and, above all, not counted as a part of its chord, whose callback would
otherwise fire before the real run ended.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from celery.exceptions import Ignore

from jobsys import service
from jobsys.context import Context
from jobsys.service.progress import TaskStart

log = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive_run(task: Any, ctx: Context) -> Iterator[TaskStart | None]:
    """Run the block as the task's only live run; it gets what ``start_task``
    says (None: the job is over or the task already ended, so do not run)."""
    request = task.request
    worker = request.hostname or "?"
    # kombu's delivery tag stays the same across redeliveries of one message.
    tag = (request.properties or {}).get("delivery_tag")
    with service.task_lease(ctx, request.id, worker=worker, delivery_tag=tag) as lease:
        if lease is None:
            raise Ignore()
        yield service.start_task(ctx, request.id, worker)


def gives_up(ctx: Context, begun: TaskStart) -> str | None:
    """Why this delivery must not run the task again (its worker died on each
    of too many deliveries: a poison item, an OOM kill), or None to run it."""
    most = ctx.settings.task_max_deliveries
    if begun.attempt <= most:
        return None
    return (
        f"gave up after {most} deliveries: the worker running this task died each "
        f"time (last on {begun.previous_worker or 'an unknown worker'})"
    )
