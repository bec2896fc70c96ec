"""Unit fixtures: a SQLite database in a temp folder and a dispatcher that records."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from jobsys.auth import Principal
from jobsys.celery_app import make_celery
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.db import make_session_factory
from jobsys.dispatch import CeleryDispatcher, MemoryDispatcher
from webui import create_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        data_dir=str(tmp_path),
        secret_key="unit-test-secret-key-0123456789",
        docker_images=("jobsys/*", "busybox*"),
        outbox_grace_s=0.0,
    )


@pytest.fixture
def dispatcher() -> MemoryDispatcher:
    return MemoryDispatcher()


@pytest.fixture
def ctx(settings: Settings, dispatcher: MemoryDispatcher) -> Context:
    return Context(
        settings=settings, sessions=make_session_factory(settings), dispatcher=dispatcher
    )


@pytest.fixture
def developer() -> Principal:
    return Principal(name="dev", role="developer")


@pytest.fixture
def viewer() -> Principal:
    return Principal(name="eve", role="viewer")


def docker_spec(command: str = "echo hi", **extra: object) -> dict[str, object]:
    step = {
        "kind": "docker",
        "image": "jobsys/busybox:local",
        "command": ["sh", "-c", command],
        **extra,
    }
    return {"name": "hello", "steps": [step]}


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
def app(ctx: Context) -> Flask:
    """The web app over this test's context (a test module may define its own)."""
    return create_app(context=ctx)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
