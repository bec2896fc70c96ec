"""The in-process fixtures every test folder shares (tests/conftest.py loads
this module as a plugin): settings over a temp folder, a SQLite database, a
recording dispatcher, the web app and its test client, and the real
dispatcher over a fake Redis. A folder that needs more (the example catalog)
narrows these in its own conftest rather than building its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from jobsys.auth import Principal
from jobsys.broker.dispatch import CeleryDispatcher, MemoryDispatcher
from jobsys.celery_app import make_celery
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.store.db import make_session_factory
from tests.support.examples import IMAGES
from webui import create_app

SECRET_KEY = "unit-test-secret-key-0123456789"


def make_settings(data_dir: Path | str, **overrides: Any) -> Settings:
    """The settings of an in-process test: its own folder (so its own SQLite
    database and key), a fixed secret, busybox allowed, no outbox grace."""
    return Settings.from_env(
        {},
        **{
            "data_dir": str(data_dir),
            "secret_key": SECRET_KEY,
            "docker_images": IMAGES,
            "outbox_grace_s": 0.0,
            **overrides,
        },
    )


def make_context(settings: Settings, dispatcher: Any | None = None) -> Context:
    return Context(
        settings=settings,
        sessions=make_session_factory(settings),
        dispatcher=MemoryDispatcher() if dispatcher is None else dispatcher,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def dispatcher() -> MemoryDispatcher:
    return MemoryDispatcher()


@pytest.fixture
def ctx(settings: Settings, dispatcher: MemoryDispatcher) -> Context:
    return make_context(settings, dispatcher)


@pytest.fixture
def developer() -> Principal:
    return Principal(name="dev", role="developer")


@pytest.fixture
def viewer() -> Principal:
    return Principal(name="eve", role="viewer")


@pytest.fixture
def broker(
    ctx: Context, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[Context, fakeredis.FakeRedis]:
    """The real dispatcher reading a fake Redis, where a test puts the raw broker
    state (kombu's priority lists, heartbeats); jobs are still submitted through
    ``ctx`` and its recording dispatcher. The URL points nowhere, so nothing can
    reach a real Redis by mistake."""
    fake = fakeredis.FakeRedis()
    real = CeleryDispatcher(make_celery(replace(settings, redis_url="redis://127.0.0.1:1/0")))
    monkeypatch.setattr(real, "_with_redis", lambda use: use(fake))
    return replace(ctx, dispatcher=real), fake


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def quick_followers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower of a job's events waits 5 s for news before it looks at the
    database; with this fixture, 50 ms."""
    monkeypatch.setattr("jobsys.service.live.WAIT_MS", 50)


@pytest.fixture
def app(ctx: Context) -> Flask:
    """The web app over this test's context (a test module may define its own)."""
    return create_app(context=ctx)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
