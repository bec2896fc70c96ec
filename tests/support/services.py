"""Finding the real services tests need: skip when one is missing locally,
fail when ``CI`` is set, so CI can never pass by skipping."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import redis
from redis.exceptions import RedisError

REDIS_URL = os.environ.get("JOBSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_URL = os.environ.get(
    "JOBSYS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BUSYBOX_IMAGE = "jobsys/busybox:local"

#: The database of the shared Redis each of its users takes, one each, so that
#: none flushes another's keys: the session stacks live for the whole run, and
#: a test that flushed their database would pull queued tasks from under them.
REDIS_DATABASES = {
    "leases": 0,
    "leader-lock": 1,
    "waiting": 2,
    "event-cap": 9,
    "beat": 10,
    "live-events": 11,
    "sign-in": 12,
    "stack-sqlite": 13,
    "stack-postgresql": 14,
    "two-beats": 15,
    "beat-wake": 3,
}


def redis_url(purpose: str) -> str:
    """The shared Redis, on the database kept for ``purpose``."""
    return f"{REDIS_URL}/{REDIS_DATABASES[purpose]}"


#: What every skip for a missing service says between the service and the fix.
NOT_AVAILABLE = " is not available: "


def missing(what: str, how: str) -> None:
    message = f"{what}{NOT_AVAILABLE}{how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_redis(url: str = REDIS_URL) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (RedisError, OSError):
        missing(f"Redis at {url}", "start redis-server (scripts/ensure-services.sh)")


def require_postgres(url: str = POSTGRES_URL) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError:
        missing(f"PostgreSQL at {url}", "start it (scripts/ensure-services.sh)")
    finally:
        engine.dispose()


def postgres_schema_url(schema: str, url: str = POSTGRES_URL) -> str:
    """The test database seen through its own schema, so a test that drops and
    creates tables does not pull them from under the live stack's processes."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


def require_docker() -> None:
    if shutil.which("docker") is None:
        missing("the docker CLI", "run scripts/ensure-docker.sh")
    probe = subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True)
    if probe.returncode != 0:
        missing(f"the Docker engine with {BUSYBOX_IMAGE}", "run scripts/ensure-docker.sh")


CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium at {CHROMIUM}", "run scripts/ensure-chromium.sh (Debian's chromium)")


def missing_services(reasons: list[str]) -> dict[str, int]:
    """How many skips each missing service caused, from the skip reasons (the
    rest, skips for other reasons, are not counted)."""
    counts: dict[str, int] = {}
    for reason in reasons:
        what, found, _ = reason.removeprefix("Skipped: ").partition(NOT_AVAILABLE)
        if found:
            counts[what] = counts.get(what, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def report_missing_services(terminalreporter: pytest.TerminalReporter) -> None:
    """Outside CI a missing service skips its tests (in CI it fails them): say
    at the end of the run how many each one skipped, so a green run that ran
    nothing real is visible (tests/conftest.py's terminal summary)."""
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
