"""The jobsys Celery app, for workers, beat, Flower and ``celery -A jobsys.celery_app``.

Defines no tasks itself: it names the worker modules that do. The broker
carries JSON only, so a pickle put on the queue by anyone is refused by kombu
before it reaches our code.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend

from beat_schedule import BEAT_SCHEDULE
from jobsys.broker.canvas import (
    DOCKER_QUEUE,
    PYTHON_QUEUE,
    REAP_ORPHANS,
    RUN_DOCKER_STEP,
    SWEEP_LOST_TASKS,
)
from jobsys.config import Settings
from jobsys.errors import ConfigError

TASK_MODULES = [
    "workers.docker_step",
    "workers.function_step",
    "workers.housekeeping",
    "workers.revocations",  # signal handlers only
    "workers.heartbeats",  # signal handler only
]


class JobsysCelery(Celery):
    """A Celery app that carries the jobsys settings it was made from."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("jobsys", **kwargs)
        self.settings = settings


class PublisherRedisBackend(RedisBackend):
    """The Redis result backend of a process that sends work and never waits on
    a Celery result (the web app, CLI, scheduler read outcomes from the database).

    Celery's own subscribes the sending process to each task's result channel
    (one SUBSCRIBE per task, and an UNSUBSCRIBE when we drop it: celery/celery#3812,
    #4824), two Redis round trips per task that nobody here listens to. Results
    and chord counters are still stored as usual; only following them is gone.
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def add_pending_result(
        self, result: Any, weak: bool = False, start_drainer: bool = True
    ) -> Any:
        return result

    def add_pending_results(self, results: Any, weak: bool = False) -> Any:
        return list(results)

    def remove_pending_result(self, result: Any) -> Any:
        return result

    def on_result_fulfilled(self, result: Any) -> None:
        return None

    def wait_for_pending(self, result: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "this Celery app only publishes (make_celery(publisher=True)): it follows no "
            "results, so AsyncResult.get() would never return; read the job from the database"
        )


#: How a publisher (web app, CLI) retries an unreachable Redis: briefly, since
#: an unpublished step waits safely in the outbox. Workers keep Celery's patience.
PUBLISHER_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def broker_options(settings: Settings) -> dict[str, Any]:
    """kombu's Redis transport options: short socket timeouts, and the visibility
    timeout after which a dead worker's unacknowledged task goes to another.

    kombu looks for such messages every ``unacked_restore_interval`` seconds but
    scans only on every ``unacked_restore_throttle``-th look (10 s x 10 by
    default), which would add up to 100 s to the timeout; we look a few times per
    timeout and scan each time.
    """
    visibility = settings.broker_visibility_timeout_s
    renew_every = settings.task_lease_ttl_s / 3
    if renew_every >= visibility / 2:
        raise ConfigError(
            f"JOBSYS_TASK_LEASE_TTL_S={settings.task_lease_ttl_s:g} is too long for "
            f"JOBSYS_BROKER_VISIBILITY_TIMEOUT_S={visibility:g}: a running task renews "
            "its lease (and hides its message) every third of the TTL, which must be "
            "under half the visibility timeout; shorten the TTL or raise the timeout"
        )
    return {
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1.0, min(10.0, visibility / 5)),
        "unacked_restore_throttle": 1,
        # One list per priority level, so a job's priority (0-9) orders its waiting tasks.
        "priority_steps": list(range(10)),
    }


def housekeeping_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """``beat_schedule.py``'s entries, the lost-task sweep at its configured pace."""
    every = settings.lost_task_sweep_s
    return {
        name: (
            {**entry, "schedule": every, "options": {**entry["options"], "expires": every}}
            if entry["task"] == SWEEP_LOST_TASKS and entry["schedule"] != every
            else entry
        )
        for name, entry in BEAT_SCHEDULE.items()
    }


def make_celery(settings: Settings, *, publisher: bool = False) -> JobsysCelery:
    """The jobsys Celery app; ``publisher=True`` for processes that only send work."""
    app = JobsysCelery(
        settings,
        broker=settings.redis_url,
        backend=settings.redis_url,
        include=TASK_MODULES,
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=PYTHON_QUEUE,
        task_routes={
            RUN_DOCKER_STEP: {"queue": DOCKER_QUEUE},
            REAP_ORPHANS: {"queue": DOCKER_QUEUE},
        },
        # A task is acknowledged when it ends, so a worker killed mid-task
        # leaves it on the queue for another worker.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Celery's prefork pool, which also notices a dead pool process within
        # half a second when its event loop misses the death: workers/pool.py.
        worker_pool="workers.pool:TaskPool",
        worker_prefetch_multiplier=1,
        task_track_started=True,
        # Workers send task events (Flower's task pages live on them). The
        # publisher's "task-sent" event is not sent: a PUBLISH per task (per
        # chunk of a map) in the submitting request that nothing here reads;
        # Flower lists a task from its "task-received" on.
        worker_send_task_events=True,
        task_send_sent_event=False,
        result_expires=settings.result_ttl_s,
        result_extended=True,
        # Publishing while Redis is down must fail fast: the job waits in the
        # outbox rather than the HTTP request hanging.
        task_publish_retry_policy=PUBLISHER_RETRY,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        redis_socket_connect_timeout=2,
        redis_socket_timeout=10,
        beat_schedule=housekeeping_schedule(settings),
        beat_scheduler="jobsys.scheduler:DatabaseScheduler",
        # Only the banner and the beat pidbox read this: our scheduler wakes every second.
        beat_max_loop_interval=5,
        worker_hijack_root_logger=False,
    )
    if publisher:
        app.conf.result_backend_transport_options = {"retry_policy": PUBLISHER_RETRY}
        # Celery's `override_backends` setting, which the loader keeps (it reads it
        # only from config_from_object): redis:// and rediss:// results, not followed.
        publisher_backend = f"{__name__}:{PublisherRedisBackend.__name__}"
        app.loader.override_backends = {"redis": publisher_backend, "rediss": publisher_backend}
    return app


app = make_celery(Settings.from_env())
