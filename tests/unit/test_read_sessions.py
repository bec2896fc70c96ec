"""Reading sessions on SQLite (``SessionFactory.reading``): the reads every
request makes take no write lock, cannot write, and leave their pooled
connection fit for writing afterwards."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.datadir import sqlite_path
from jobsys.service.jobs import read_job_infos
from jobsys.service.records import JobInfo
from jobsys.store.models import Job
from tests.support.specs import docker_spec, function_spec, two_docker_steps


def _other_writer_can_lock(ctx: Context) -> bool:
    """Whether another connection gets SQLite's write lock at once (no waiting)."""
    path = sqlite_path(ctx.settings.database_url)
    other = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


def test_a_reading_session_holds_no_write_lock(ctx: Context, developer: Principal) -> None:
    service.submit_job(ctx, developer, docker_spec())
    with ctx.sessions.begin() as writing:
        writing.execute(select(func.count()).select_from(Job)).scalar()
        assert not _other_writer_can_lock(ctx)  # the check itself can fail
    with ctx.sessions.reading() as reading:
        assert reading.execute(select(func.count()).select_from(Job)).scalar() == 1
        assert _other_writer_can_lock(ctx)


def test_a_reading_session_cannot_write_and_its_connection_writes_again_after(
    ctx: Context, developer: Principal
) -> None:
    service.submit_job(ctx, developer, docker_spec())
    with ctx.sessions.reading() as reading, pytest.raises(OperationalError, match="readonly"):
        reading.execute(text("DELETE FROM audit"))
    # the pool hands the same connection to the next session, which must write
    job = service.submit_job(ctx, developer, docker_spec())
    assert service.get_job(ctx, developer, job.id).status == "queued"
    with ctx.sessions.begin() as writing:
        writing.execute(text("DELETE FROM audit"))


def test_core_job_reads_equal_the_orm_ones(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    """get_job and the waiters read jobs by Core selects of the shown columns:
    the same JobInfo as from the ORM objects, steps in order, unknown ids left out."""
    ids = [
        service.submit_job(ctx, developer, two_docker_steps()).id,
        service.submit_job(ctx, developer, function_spec([1, 2, 3], chunk_size=1)).id,
    ]
    service.cancel_job(ctx, developer, ids[0])
    with ctx.sessions.reading() as session:
        core = {info.id: info for info in read_job_infos(session, [*ids, "no-such-job"])}
        orm = {i: JobInfo.of(session.get(Job, i)) for i in ids}
    assert core == orm and list(orm) == ids
    assert [s.position for s in core[ids[0]].steps] == [0, 1]
    assert service.get_job(ctx, developer, ids[1]) == orm[ids[1]]
