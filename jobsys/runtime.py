"""Building the real Context for a process (web app, worker child, CLI).

Database engines must not cross ``fork()``: Celery's prefork pool forks
after importing the app, so each process builds its own Context on first use.
Building one first fixes the data folder's modes (``jobsys.datadir``), so a
web app or worker started on its own tightens them as ``jobsys run`` does.
"""

from __future__ import annotations

import logging
import os

from jobsys.broker.dispatch import CeleryDispatcher
from jobsys.broker.events import RedisEventBus
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.datadir import tighten
from jobsys.store.db import make_session_factory

_cache: dict[tuple[int, Settings], Context] = {}
log = logging.getLogger(__name__)


def build_context(settings: Settings | None = None, app: object | None = None) -> Context:
    """A Context for this process, made once per (pid, settings)."""
    from jobsys.celery_app import make_celery

    if app is not None and settings is None:
        settings = app.settings  # type: ignore[attr-defined]
    settings = settings or Settings.from_env()
    key = (os.getpid(), settings)
    if key not in _cache:
        for note in tighten(settings):
            log.warning("jobsys: %s (the data folder is for this user only)", note)
        celery_app = app if app is not None else make_celery(settings, publisher=True)
        _cache[key] = Context(
            settings=settings,
            sessions=make_session_factory(settings),
            dispatcher=CeleryDispatcher(celery_app),
            events=RedisEventBus.from_url(settings.redis_url, settings.events_ttl_s),
        )
    return _cache[key]
