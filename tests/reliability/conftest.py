"""Reliability fixtures for in-process drills: the web app over SQLite and a
recording dispatcher, with the example catalog loaded and a token per role.

Drills that need real processes (workers, Redis, PostgreSQL) build their own
stack; these are for the ones that hammer the web app's doors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.db import make_session_factory
from jobsys.dispatch import MemoryDispatcher
from webui import create_app

EXAMPLES = Path(__file__).parents[2] / "jobs"
#: The image allow-list these drills run under: busybox is fine, ubuntu is not.
IMAGES = ("jobsys/*", "busybox*")


@pytest.fixture
def web_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        data_dir=str(tmp_path),
        secret_key="reliability-secret-key-0123456789",
        docker_images=IMAGES,
        outbox_grace_s=0.0,
        catalog_dir=str(EXAMPLES),
    )


@pytest.fixture
def web_dispatcher() -> MemoryDispatcher:
    return MemoryDispatcher()


@pytest.fixture
def web_ctx(web_settings: Settings, web_dispatcher: MemoryDispatcher) -> Context:
    ctx = Context(
        settings=web_settings,
        sessions=make_session_factory(web_settings),
        dispatcher=web_dispatcher,
    )
    service.reload_catalog(ctx, SYSTEM)
    return ctx


@pytest.fixture
def web_app(web_ctx: Context) -> Flask:
    return create_app(context=web_ctx)


def bearer_for(ctx: Context, role: str) -> dict[str, str]:
    """Authorization headers of a new token with ``role``, named after it."""
    token = service.create_token(ctx, SYSTEM, name=role, role=role).token
    return {"Authorization": f"Bearer {token}"}
