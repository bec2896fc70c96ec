"""Schema migrations on SQLite: a 0001 database full of data upgrades with every
row kept and the app working on it; a database from before migrations is
recognised and stamped; head matches the models exactly, whichever way it was
reached; unknown schemas are refused with the fix; ``jobsys db`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text

from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.cli.main import main
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.errors import ConfigError, SpecError
from jobsys.store import schema
from jobsys.store.db import make_engine, make_session_factory
from jobsys.store.models import Base
from jobsys.store.schema import (
    check_references,
    current_revision,
    head,
    migrating,
    revisions,
    upgrade_schema,
)
from tests.support.fixtures import make_settings
from tests.support.migration_data import (
    at_0001_with_data,
    check_app_works,
    check_rows_kept,
    from_before_migrations,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'jobsys.db'}")


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return current_revision(conn)


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_the_revisions_are_0001_to_0010() -> None:
    assert revisions() == [f"{n:04}" for n in range(1, 11)]
    assert head() == "0010"


def test_a_0001_database_with_data_upgrades_keeping_every_row(
    settings: Settings, engine: Engine
) -> None:
    before = at_0001_with_data(engine)
    done = upgrade_schema(engine)
    assert (done.before, done.after, done.adopted) == ("0001", "0010", None)
    with engine.connect() as conn:
        check_rows_kept(conn, before)
    assert differences(engine) == []
    ctx = Context(settings, make_session_factory(settings), MemoryDispatcher())
    check_app_works(ctx)


def test_a_database_from_before_migrations_is_recognised_and_upgraded(
    settings: Settings, engine: Engine
) -> None:
    """Made by ``create_all`` at d60a991: the 0001 tables and no version table."""
    before = from_before_migrations(engine)
    make_session_factory(settings)  # what every service does at start
    assert revision_of(engine) == head()
    with engine.connect() as conn:
        check_rows_kept(conn, before)
    assert differences(engine) == []


def test_a_database_made_by_create_all_from_todays_models_is_stamped_head(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
    done = upgrade_schema(engine)
    assert (done.before, done.after, done.adopted) == ("0010", "0010", "0010")
    assert revision_of(engine) == head()


@pytest.mark.parametrize("path", ["every migration", "create_all and stamp"])
def test_head_matches_the_models_exactly(engine: Engine, path: str) -> None:
    """The two ways to head agree: a new database takes the quick one."""
    if path == "every migration":
        upgrade_schema(engine, "0001")
    assert upgrade_schema(engine).after == head()
    assert revision_of(engine) == head()
    assert differences(engine) == []


def test_a_new_database_is_built_by_the_migrations_while_the_models_are_ahead(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-change (models edited, no revision yet), stamping a ``create_all``
    database with the old head would be a lie that the next upgrade trips on."""
    assert schema.models_match_head()
    ran: list[str] = []
    upgrade = schema.command.upgrade
    monkeypatch.setattr(schema, "models_match_head", lambda: False)
    monkeypatch.setattr(
        schema.command, "upgrade", lambda config, to: ran.append(to) or upgrade(config, to)
    )
    assert upgrade_schema(engine).before is None
    assert ran == [head()]
    assert differences(engine) == []


def reflected(engine: Engine) -> dict[str, object]:
    """Everything SQLite tells about each table, foreign key actions included."""
    with engine.connect() as conn:
        found = inspect(conn)
        return {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                found.get_pk_constraint(table),
                sorted(found.get_foreign_keys(table), key=lambda f: f["constrained_columns"]),
                sorted(found.get_indexes(table), key=lambda i: str(i["name"])),
                found.get_unique_constraints(table),
            )
            for table in found.get_table_names()
        }


def test_migrations_and_create_all_build_the_same_tables(tmp_path: Path) -> None:
    migrated, created = (make_engine(f"sqlite:///{tmp_path / n}.db") for n in ("m", "c"))
    upgrade_schema(migrated, "0001")
    upgrade_schema(migrated)
    upgrade_schema(created)
    assert reflected(migrated) == reflected(created)


def test_an_unrecognisable_database_is_refused_with_the_fix(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE tokens (id INTEGER PRIMARY KEY, name TEXT)"))
    with pytest.raises(ConfigError, match=r"match no revision .*no table audit.*Move it aside"):
        upgrade_schema(engine)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == ["tokens"]  # untouched


def test_a_database_from_a_newer_jobsys_is_refused(engine: Engine) -> None:
    upgrade_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(ConfigError, match="revision 0099, which this jobsys does not know"):
        upgrade_schema(engine)


def test_unknown_and_backward_targets_are_bad_input(engine: Engine) -> None:
    with pytest.raises(SpecError, match="no revision 'nope'"):
        upgrade_schema(engine, "nope")
    upgrade_schema(engine)
    with pytest.raises(SpecError, match="never downgrades"):
        upgrade_schema(engine, "0001")


def test_sqlite_foreign_keys_are_off_while_migrating_and_checked(engine: Engine) -> None:
    """Batch alters copy and drop tables; with foreign keys on, dropping jobs
    would cascade through every child table."""
    upgrade_schema(engine)
    with pytest.raises(ConfigError, match="rolled back"), migrating(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
        conn.execute(
            text(
                "INSERT INTO log_lines (job_id, ts, stream, line) "
                "VALUES ('nosuchjob', '2026-01-01 00:00:00', 'stdout', 'x')"
            )
        )
        check_references(conn)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM log_lines").scalar() == 0


def test_db_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"JOBSYS_DATABASE_URL": url, "JOBSYS_DATA_DIR": str(tmp_path)}
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["db", *args], env=env)
        assert result.exit_code == code, result.output
        return result.output

    assert run("current").startswith("none: empty database")
    assert run("history").splitlines()[-1].startswith("0010  start times")
    assert "created the schema at 0001" in run("upgrade", "--revision", "0001")
    assert run("current") == "0001\n"
    assert "from 0001 to 0010" in run("upgrade")
    assert "nothing to do" in run("upgrade")
    assert run("current") == "0010 (head)\n"
    assert "no revision 'nope'" in run("upgrade", "--revision", "nope", code=2)
    env["JOBSYS_DATABASE_URL"] = f"sqlite:///{tmp_path}"  # a folder: sqlite cannot open it
    assert "cannot reach the database" in run("upgrade", code=5)
