"""Engine and session factory from Settings.

SQLite is tuned for several writer processes (web app, workers): WAL so
readers never wait, a busy timeout, and ``BEGIN IMMEDIATE`` for every
transaction that may write. A deferred transaction that reads and then writes
can fail at once with "database is locked" when another process wrote in
between; an immediate one waits its turn instead. But an immediate transaction
holds the one write lock, also while it only reads: sessions from
``SessionFactory.reading()`` (the reads every request makes: the token, the job)
begin deferred instead, so they neither wait for writers nor make them wait
(SQLite's busy wait sleeps in steps of milliseconds).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from jobsys.config import Settings
from jobsys.datadir import private_file, sqlite_path
from jobsys.store.schema import upgrade_schema

#: The connection execution option that marks a read-only session's transactions.
READ_ONLY = "jobsys_read_only"


class SessionFactory(sessionmaker[Session]):
    """Sessions for the database; ``reading()`` for a unit of work that only reads."""

    def reading(self) -> Session:
        """A session that must not write: on SQLite its transaction begins
        deferred, taking no write lock (a write in it fails: "attempt to write
        a readonly database"); elsewhere it is an ordinary session."""
        return self(bind=self._reading_engine())

    def reading_connection(self) -> Connection:
        """A bare connection for Core reads, with ``reading()``'s transaction
        rules: for the one-statement reads every request makes (its token), where
        a session's bookkeeping cost more than the query."""
        return self._reading_engine().connect()

    def _reading_engine(self) -> Engine:
        # One option engine for the factory's life: making it is a copy of the
        # engine's options, which every request paid.
        bind = self.kw["bind"]
        cached = self.__dict__.get("_reader")
        if cached is None or cached[0] is not bind:
            cached = (bind, bind.execution_options(**{READ_ONLY: True}))
            self.__dict__["_reader"] = cached
        return cached[1]


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver we install; a bare postgresql:// would ask for psycopg2.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    database = sqlite_path(url)
    if database is not None:
        # Made by us, 0600, before SQLite would make it (and its WAL files) under
        # the umask: whatever opens the database first (a process, `jobsys db upgrade`).
        private_file(database)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that the
        # "begin" hook below decides how each transaction starts.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = bool(conn.get_execution_options().get(READ_ONLY))
        if conn.info.get(READ_ONLY, False) != read_only:
            # query_only makes a slip (a write in a reading session) fail loudly
            # rather than take the lock in the middle of a deferred transaction.
            # ``info`` lives as long as the SQLite connection, which keeps the pragma.
            conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
            conn.info[READ_ONLY] = read_only
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def make_session_factory(settings: Settings, *, create: bool = True) -> SessionFactory:
    """A session factory for the configured database, its schema first brought to
    the newest revision unless ``create`` is false (see ``jobsys.store.schema``)."""
    engine = make_engine(settings.database_url)
    if create:
        upgrade_schema(engine)
    return SessionFactory(engine, expire_on_commit=False)
