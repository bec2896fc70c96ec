"""Alembic's environment for jobsys.

``jobsys.store.schema`` runs it with a connection it has already opened inside its
lock (``config.attributes["connection"]``). The ``alembic`` command, configured
by ``[tool.alembic]`` in pyproject.toml, runs it without one: then it opens
``JOBSYS_DATABASE_URL`` through ``jobsys.store.db.make_engine`` (the same SQLite
pragmas and psycopg driver as the services) and takes the same lock.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from jobsys.config import Settings
from jobsys.store.db import make_engine
from jobsys.store.models import Base, UTCDateTime
from jobsys.store.schema import check_references, migrating


def render_item(kind: str, obj: Any, _autogen_context: Any) -> str | bool:
    """Autogenerate writes our UTCDateTime as the plain DateTime it is in the
    database, so that a revision never imports ``jobsys.store.models``: the models move
    on, and a revision must keep doing what it did."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def configure(**options: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        render_item=render_item,
        # SQLite alters a table by copying it; batch operations do that for us,
        # and on PostgreSQL they are plain ALTERs.
        render_as_batch=True,
        compare_type=True,
        **options,
    )


def run_on(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode():
        # ``alembic upgrade --sql``: the SQL for a DBA to review and run.
        configure(url=Settings.from_env().database_url, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        run_on(connection)
    else:
        engine = make_engine(Settings.from_env().database_url)
        try:
            with migrating(engine) as opened:
                run_on(opened)
                check_references(opened)
        finally:
            engine.dispose()


main()
