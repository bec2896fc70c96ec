"""Static housekeeping entries for celery beat.

User schedules live in the database (see ``jobsys/scheduler.py``, which
merges these in); these are the sweeps jobsys needs to keep its promises.
"""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Publishes steps whose publish failed (broker down at submit time).
    "jobsys-outbox-sweep": {
        "task": "jobsys.sweep_outbox",
        "schedule": 10.0,
        "options": {"queue": "python", "expires": 10.0},
    },
    # Fails tasks nobody will run or report (a worker died and its message is
    # gone, Redis restarted empty) and ends the steps and jobs they held up.
    # celery_app sets the interval from JOBSYS_LOST_TASK_SWEEP_S.
    "jobsys-sweep-lost-tasks": {
        "task": "jobsys.sweep_lost_tasks",
        "schedule": 10.0,
        "options": {"queue": "python", "expires": 10.0},
    },
    # Removes containers of jobs that ended without their worker cleaning up.
    "jobsys-reap-orphans": {
        "task": "jobsys.reap_orphans",
        "schedule": 60.0,
        "options": {"queue": "docker", "expires": 60.0},
    },
    # Forgets finished jobs and schedule runs older than JOBSYS_RETENTION_DAYS (off at 0).
    "jobsys-purge-history": {
        "task": "jobsys.purge_history",
        "schedule": 3600.0,
        "options": {"queue": "python", "expires": 3600.0},
    },
}
