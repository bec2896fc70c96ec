"""Shared fixtures: the in-process ones (tests/support/fixtures.py, loaded as a
plugin) and the live stack, once per database (SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def sandbox_share() -> Iterator[Path]:
    """A folder the live stacks' sandboxed code may write to (``JOBSYS_SANDBOX_MOUNTS``):
    pytest's own folders are 0700 for root, and the sandbox runs as nobody."""
    root = Path(tempfile.mkdtemp(prefix="jobsys-share-"))
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def shared_path(sandbox_share: Path) -> Path:
    """A test's own folder in ``sandbox_share``, where a job's code leaves what the
    test checks (markers, call counts); world-writable, like /tmp."""
    path = sandbox_share / uuid.uuid4().hex
    path.mkdir()
    path.chmod(0o777)
    return path


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sandbox_share: Path,
) -> Iterator[LiveStack]:
    name = request.param
    require_redis()
    tmp = tmp_path_factory.mktemp(f"stack-{name}")
    if name == "postgresql":
        require_postgres()
        database_url = POSTGRES_URL
    else:
        database_url = f"sqlite:///{tmp / 'jobsys.db'}"
    yield from start_stack(
        name, database_url, redis_url(f"stack-{name}"), tmp, sandbox_mounts=(str(sandbox_share),)
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_missing_services(terminalreporter)
