"""The service Context of the worker process a task runs in."""

from __future__ import annotations

from celery import current_app

from jobsys.context import Context
from jobsys.runtime import build_context


def worker_context() -> Context:
    return build_context(app=current_app._get_current_object())
