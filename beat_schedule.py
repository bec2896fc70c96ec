"""Static housekeeping entries for celery beat.

User schedules live in the database (a later issue); these are the sweeps
jobsys needs to keep its promises, merged into the Celery app's config.
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
    # Removes containers of jobs that ended without their worker cleaning up.
    "jobsys-reap-orphans": {
        "task": "jobsys.reap_orphans",
        "schedule": 60.0,
        "options": {"queue": "docker", "expires": 60.0},
    },
}
