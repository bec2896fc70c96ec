"""Flower for the jobsys app, with its ``/metrics`` behind the same basic auth
as every other Flower page (Flower serves it to anyone; its Prometheus output
names tasks, workers and queues).

    python -m jobsys.flower [flower options]     # what ``jobsys flower`` runs
"""

from __future__ import annotations

import sys
from typing import Any

import tornado.web
from flower.views import monitor


def protect_metrics() -> None:
    """Make Flower's metrics handler ask for credentials like its other views."""
    handler: Any = monitor.Metrics
    if not getattr(handler.get, "jobsys_protected", False):
        handler.get = tornado.web.authenticated(handler.get)
        handler.get.jobsys_protected = True


def main(argv: list[str] | None = None) -> None:
    from celery.bin.celery import main as celery_main

    protect_metrics()
    sys.argv = ["celery", "-A", "jobsys.celery_app", "flower", *(argv or sys.argv[1:])]
    celery_main()


if __name__ == "__main__":
    main()
