"""The database schema, moved forward by Alembic migrations (``jobsys/migrations``).

Every process that opens the database (web, workers, beat, the CLI) calls
``upgrade_schema`` first, so ``make run``, compose and a plain ``jobsys web``
all work on a database an older jobsys made. Four cases:

- at a known revision: upgrade to head (nothing to do when there already);
- empty: ``create_all`` and stamp head, as Alembic advises for new databases
  (a third of the time of running every migration, and tests make hundreds);
  a test proves both give the same schema. While the models are ahead of the
  newest revision (a change without its migration yet) the migrations run
  instead, so no database is ever stamped with a revision it does not have;
- tables but no revision, made by ``create_all`` before migrations existed:
  recognised by comparing its tables, columns and indexes with each revision's,
  stamped with the one it matches, then upgraded;
- a revision we do not know (a newer jobsys was here) or tables that match no
  revision: refused with ``ConfigError`` and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from jobsys.errors import ConfigError, DatabaseUnavailable, SpecError
from jobsys.store.models import Base

log = logging.getLogger(__name__)

SCRIPT_LOCATION = "jobsys.store:migrations"
#: The PostgreSQL advisory lock held while the schema is checked and moved.
LOCK_KEY = 7305193
VERSION_TABLE = "alembic_version"

#: A table's column names and index names: enough to tell revisions apart.
Shape = dict[str, tuple[frozenset[str], frozenset[str]]]


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade_schema`` found and did."""

    url: str
    #: The revision found; None for an empty database.
    before: str | None
    after: str
    #: The revision a database from before migrations was recognised as and stamped.
    adopted: str | None = None

    def describe(self) -> str:
        if self.before is None:
            return f"created the schema at {self.after} in {self.url}"
        done = (
            f"{self.url} is at {self.after}, nothing to do"
            if self.before == self.after
            else f"upgraded {self.url} from {self.before} to {self.after}"
        )
        if self.adopted:
            return f"recognised a database from before migrations as {self.adopted}; {done}"
        return done


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code: the scripts inside the package and,
    when given, the connection env.py must use (it opens one from Settings otherwise)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    found = scripts().get_current_head()
    assert found is not None, "jobsys/migrations/versions holds no revision"
    return found


def revisions() -> list[str]:
    """Every revision, oldest first."""
    return [s.revision for s in reversed(list(scripts().walk_revisions()))]


def upgrade_schema(engine: Engine, revision: str = "head") -> Upgrade:
    """Bring the database to ``revision`` (default: the newest), in one transaction."""
    target = _resolve(revision)
    with migrating(engine) as conn:
        url = engine.url.render_as_string(hide_password=True)
        before = current_revision(conn)
        adopted = None
        if before is None and not has_tables(conn):
            if target == head() and models_match_head():
                Base.metadata.create_all(conn)
                MigrationContext.configure(conn).stamp(scripts(), "head")
                log.info("database schema: created at %s in %s", target, url)
                return Upgrade(url, None, target)
        elif before is None:
            adopted = before = _recognise(conn, url)
            MigrationContext.configure(conn).stamp(scripts(), adopted)
        elif before not in revisions():
            raise ConfigError(
                f"the database {url} is at revision {before}, which this jobsys does not "
                "know: a newer jobsys upgraded it. Run that version or a newer one, or "
                "restore a backup taken before the upgrade"
            )
        if before is not None and target not in _descendants(before):
            raise SpecError(
                {
                    "revision": f"the database is at {before}, past {target}; jobsys never "
                    "downgrades (`alembic downgrade` does: take a backup first)"
                }
            )
        if before != target:
            command.upgrade(alembic_config(conn), target)
            check_references(conn)
    result = Upgrade(url, before, target, adopted)
    if before != target or adopted:
        log.info("database schema: %s", result.describe())
    return result


def current_revision(conn: Connection) -> str | None:
    """The revision in the version table; None when it is missing or empty."""
    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction to check and move the schema in, queued behind any other.

    Web, workers and beat may all start at once (compose does). On PostgreSQL
    an advisory lock queues them: the first migrates and the others find the
    work done. On SQLite every transaction is ``BEGIN IMMEDIATE`` (``jobsys.store.db``),
    which queues them the same way. SQLite's foreign keys are off meanwhile:
    Alembic alters a SQLite table by copying it and dropping the original, and
    dropping a table that others reference ``ON DELETE CASCADE`` would delete
    their rows. The pragma is ignored inside a transaction, hence before begin.
    """
    try:
        conn = engine.connect()
    except OperationalError as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(
            f"cannot reach the database {url} ({exc.orig}): start it, or fix JOBSYS_DATABASE_URL"
        ) from exc
    sqlite = conn.dialect.name == "sqlite"
    with conn:
        if sqlite:
            _sqlite_foreign_keys(conn, "OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                yield conn
        finally:
            if sqlite:
                _sqlite_foreign_keys(conn, "ON")


def _sqlite_foreign_keys(conn: Connection, state: str) -> None:
    # Straight to sqlite3: through SQLAlchemy the statement would open a transaction.
    driver: Any = conn.connection.driver_connection
    driver.execute(f"PRAGMA foreign_keys={state}")


def check_references(conn: Connection) -> None:
    """With SQLite's foreign keys off, make sure the migrations left every reference
    pointing at a row; raising rolls the whole upgrade back."""
    if conn.dialect.name != "sqlite":
        return
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise ConfigError(
            f"the upgrade left {len(broken)} rows pointing at missing rows (first: {table} "
            f"row {rowid} -> {parent}); it was rolled back and the database is unchanged"
        )


def _resolve(revision: str) -> str:
    try:
        found = scripts().get_revision(revision)
    except CommandError as exc:
        raise SpecError(
            {"revision": f"no revision {revision!r}; `jobsys db history` lists them"}
        ) from exc
    if found is None:
        raise SpecError({"revision": "give a revision to upgrade to, such as head"})
    return found.revision


def _descendants(revision: str) -> list[str]:
    known = revisions()
    return known[known.index(revision) :]


def has_tables(conn: Connection) -> bool:
    """Whether any jobsys table exists (a shared database may hold others)."""
    return bool(set(inspect(conn).get_table_names()) & set(Base.metadata.tables))


def _recognise(conn: Connection, url: str) -> str:
    """The revision whose schema this unversioned database has."""
    shapes = _shapes()
    ours = {table for shape in shapes.values() for table in shape}
    found = {t: s for t, s in shape_of(conn).items() if t in ours}
    for revision, shape in shapes.items():
        if found == shape:
            return revision
    raise ConfigError(
        f"the database {url} holds jobsys tables but no migration revision, and they "
        f"match no revision ({_difference(found, shapes[head()])}). Move it aside (for "
        "the local default: remove .jobsys/jobsys.db) or point JOBSYS_DATABASE_URL at "
        "a new one; or make it match a revision by hand and `alembic stamp` it"
    )


def shape_of(conn: Connection) -> Shape:
    found = inspect(conn)
    return {
        table: (
            frozenset(c["name"] for c in found.get_columns(table)),
            frozenset(
                str(i["name"])
                for i in found.get_indexes(table)
                if not i.get("duplicates_constraint")
            ),
        )
        for table in found.get_table_names()
        if table != VERSION_TABLE
    }


@cache
def _shapes() -> dict[str, Shape]:
    """Each revision's shape, from running the migrations on a scratch database:
    derived from the migrations themselves, so no copy of them to keep in step."""
    scratch = create_engine("sqlite://")
    shapes = {}
    with scratch.begin() as conn:
        for revision in revisions():
            command.upgrade(alembic_config(conn), revision)
            shapes[revision] = shape_of(conn)
    scratch.dispose()
    return shapes


@cache
def models_match_head() -> bool:
    """Whether ``create_all`` builds the tables, columns and indexes the migrations
    do; worked out once per process, when the first new database is made."""
    models = {
        table.name: (
            frozenset(c.name for c in table.columns),
            frozenset(str(i.name) for i in table.indexes),
        )
        for table in Base.metadata.sorted_tables
    }
    wanted = _shapes()[head()]
    if models != wanted:
        log.warning(
            "the models differ from migration %s (%s): new databases are built by the "
            "migrations; add a revision (README: Database migrations)",
            head(),
            _difference(models, wanted).replace("newest", "migrations"),
        )
    return models == wanted


def _difference(found: Shape, wanted: Shape) -> str:
    """The first few ways ``found`` differs from ``wanted``, for the error message."""
    notes = [f"no table {t}" for t in sorted(wanted.keys() - found.keys())]
    notes += [f"an unknown table {t}" for t in sorted(found.keys() - wanted.keys())]
    for table in sorted(found.keys() & wanted.keys()):
        (columns, indexes), (want_columns, want_indexes) = found[table], wanted[table]
        notes += [f"no column {table}.{c}" for c in sorted(want_columns - columns)]
        notes += [f"an unknown column {table}.{c}" for c in sorted(columns - want_columns)]
        notes += [f"no index {i}" for i in sorted(want_indexes - indexes)]
    more = f" and {len(notes) - 4} more" if len(notes) > 4 else ""
    return "compared with the newest: " + ", ".join(notes[:4]) + more
