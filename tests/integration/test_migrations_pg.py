"""Schema migrations on PostgreSQL, in a schema of their own (search_path):
a 0001 database full of data upgrades with every row kept and the app
working on it; a database from before migrations is recognised; head matches
the models exactly; the version table stays in the schema; processes starting
at once queue on the advisory lock and only one of them migrates."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text

from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.store.db import make_engine, make_session_factory
from jobsys.store.models import Base
from jobsys.store.schema import Upgrade, current_revision, head, upgrade_schema
from tests.support.fixtures import make_settings
from tests.support.migration_data import (
    at_0001_with_data,
    check_app_works,
    check_rows_kept,
    from_before_migrations,
)
from tests.support.services import POSTGRES_URL, postgres_schema_url, require_postgres

pytestmark = pytest.mark.integration

SCHEMA = "migrations_test"


def _drop_schema() -> None:
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    require_postgres()
    _drop_schema()
    yield make_settings(tmp_path, database_url=postgres_schema_url(SCHEMA))
    _drop_schema()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    found = make_engine(settings.database_url)
    yield found
    found.dispose()


def check_at_head(engine: Engine) -> None:
    with engine.connect() as conn:
        assert current_revision(conn) == head()
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        where = conn.execute(
            text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'jobs'")
        ).scalars()
        assert SCHEMA in set(where)
        version_in = conn.execute(
            text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'alembic_version' AND table_schema = :schema"
            ),
            {"schema": SCHEMA},
        ).scalar()
        assert version_in == SCHEMA


def test_a_0001_database_with_data_upgrades_keeping_every_row(
    settings: Settings, engine: Engine
) -> None:
    before = at_0001_with_data(engine)
    done = upgrade_schema(engine)
    assert (done.before, done.after) == ("0001", head())
    with engine.connect() as conn:
        check_rows_kept(conn, before)
    check_at_head(engine)
    sessions = make_session_factory(settings)
    try:
        check_app_works(Context(settings, sessions, MemoryDispatcher()))
    finally:
        sessions.kw["bind"].dispose()


def test_a_database_from_before_migrations_is_recognised_and_upgraded(
    settings: Settings, engine: Engine
) -> None:
    before = from_before_migrations(engine)
    done = upgrade_schema(engine)
    assert (done.before, done.after, done.adopted) == ("0001", head(), "0001")
    with engine.connect() as conn:
        check_rows_kept(conn, before)
    check_at_head(engine)


def test_a_new_database_is_created_at_head(engine: Engine) -> None:
    assert upgrade_schema(engine).before is None
    check_at_head(engine)


@pytest.mark.parametrize("start", ["empty", "0001"])
def test_processes_starting_at_once_migrate_once(
    settings: Settings, engine: Engine, start: str
) -> None:
    """compose starts web, workers and beat together: each upgrades at start."""
    if start == "0001":
        at_0001_with_data(engine)

    def start_one(_: int) -> Upgrade:
        own = make_engine(settings.database_url)
        try:
            return upgrade_schema(own)
        finally:
            own.dispose()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(start_one, range(6)))
    migrated = [r for r in results if r.before != r.after]
    assert len(migrated) == 1
    assert all(r.after == head() for r in results)
    check_at_head(engine)
