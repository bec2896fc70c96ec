"""``jobsys db ...``: the schema of the configured database (JOBSYS_DATABASE_URL).

The services upgrade at start as well; ``db upgrade`` is for doing it first, on
purpose, and seeing what it did. None of these needs Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine

from jobsys.config import Settings
from jobsys.store import schema
from jobsys.store.db import make_engine


@contextmanager
def _engine() -> Iterator[Engine]:
    engine = make_engine(Settings.from_env().database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@click.group()
def db() -> None:
    """The database schema: upgrade, current revision, history."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="The revision to reach.")
def upgrade_command(revision: str) -> None:
    """Move the database forward to a revision, keeping its data; an empty one is created."""
    with _engine() as engine:
        done = schema.upgrade_schema(engine, revision)
    click.echo(done.describe())


@db.command("current")
def current_command() -> None:
    """Print the database's revision."""
    with _engine() as engine, schema.migrating(engine) as conn:
        found = schema.current_revision(conn)
        tables = schema.has_tables(conn)
    if found is not None:
        click.echo(f"{found} (head)" if found == schema.head() else found)
    elif tables:
        click.echo("none: made before migrations; `jobsys db upgrade` recognises and stamps it")
    else:
        click.echo("none: empty database; `jobsys db upgrade` creates the schema")


@db.command("history")
def history_command() -> None:
    """List the revisions, oldest first."""
    head = schema.head()
    for script in reversed(list(schema.scripts().walk_revisions())):
        mark = " (head)" if script.revision == head else ""
        click.echo(f"{script.revision}  {script.doc}{mark}")
