"""Shared fixtures: the in-process ones (tests/support/fixtures.py, loaded as a
plugin) and the live stack, once per database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live import LiveStack, start_stack
from tests.support.services import (
    POSTGRES_URL,
    redis_url,
    report_missing_services,
    require_postgres,
    require_redis,
)

pytest_plugins = ["tests.support.fixtures", "pytester"]


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
    yield from start_stack(name, database_url, redis_url(f"stack-{name}"), tmp)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_missing_services(terminalreporter)
