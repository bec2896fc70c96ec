"""Shared fixtures: the in-process ones (tests/support/fixtures.py, loaded as a
plugin) and the live stack, once per database (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.live import LiveStack, start_stack
from tests.support.services import (
    POSTGRES_URL,
    missing_services,
    redis_url,
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
    """Outside CI a missing service skips its tests (in CI it fails them): say
    at the end how many each one skipped, so a green run that ran nothing real
    is visible."""
    if os.environ.get("CI"):
        return
    reasons = [
        report.longrepr[2]
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple)
    ]
    counts = missing_services(reasons)
    if counts:
        terminalreporter.section("skipped for a missing service")
        for what, n in counts.items():
            terminalreporter.line(f"{n:5d} skipped: {what}")
        terminalreporter.line(f"{sum(counts.values()):5d} in all; CI runs them (it fails instead)")
