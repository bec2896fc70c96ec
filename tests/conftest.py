"""Shared fixtures: the live stack, once per database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import LiveStack, start_stack
from tests.services import POSTGRES_URL, REDIS_URL, require_postgres, require_redis

#: Each stack gets its own Redis database so the two never share queues.
REDIS_DB = {"sqlite": 13, "postgresql": 14}


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    name = request.param
    require_redis()
    tmp = tmp_path_factory.mktemp(f"stack-{name}")
    if name == "postgresql":
        require_postgres()
        database_url = POSTGRES_URL
    else:
        database_url = f"sqlite:///{tmp / 'jobsys.db'}"
    yield from start_stack(name, database_url, f"{REDIS_URL}/{REDIS_DB[name]}", tmp)
