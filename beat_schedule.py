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
}
