"""The service Context of the worker process a task runs in."""

from __future__ import annotations

import os

from celery import current_app

from jobsys.context import Context
from jobsys.runtime import build_context

#: (pid, app, its context): every task asks, and build_context hashes the whole
#: Settings to find it; a forked pool child (another pid) builds its own.
_last: tuple[int, object, Context] | None = None


def worker_context() -> Context:
    global _last
    app = current_app._get_current_object()
    last = _last
    if last is not None and last[0] == os.getpid() and last[1] is app:
        return last[2]
    ctx = build_context(app=app)
    _last = (os.getpid(), app, ctx)
    return ctx
