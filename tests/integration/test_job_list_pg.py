"""The job list's query plans on PostgreSQL with 50,000 seeded jobs: every
filter is served by an index, none reads the jobs table whole, and (apart from
the name search, which sorts its few matches) none sorts the matching rows.

SQLite's plans are checked in tests/unit/test_job_list.py; PostgreSQL's
planner weighs table statistics, so it is checked here on a table large
enough (and ANALYZEd) for its choices to be the ones production sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.job_list import seed
from jobsys.service.dashboard import _hours
from jobsys.service.job_list import JobFilter, page_query
from jobsys.store.db import make_engine
from jobsys.store.models import Base, Job
from tests.support.services import postgres_schema_url, require_postgres

pytestmark = pytest.mark.integration

JOBS = 50_000


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    require_postgres()
    found = make_engine(postgres_schema_url("job_list_plans"))
    Base.metadata.drop_all(found)
    Base.metadata.create_all(found)
    seed(found, JOBS)
    yield found
    Base.metadata.drop_all(found)
    found.dispose()


def plan_of(engine: Engine, query: Any) -> str:
    compiled = query.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).all()
    return "\n".join(row[0] for row in rows)


def test_every_filter_is_served_by_an_index(engine: Engine) -> None:
    with engine.connect() as conn:
        newest = conn.exec_driver_sql("SELECT max(created_at) FROM jobs").scalar_one()
    since = newest - timedelta(hours=2)
    filters = [
        JobFilter(),
        JobFilter(status="failed"),
        JobFilter(owner="dee"),
        JobFilter(template="echo"),
        JobFilter(since=since),
        JobFilter(since=since, status="running"),
        JobFilter(tag="nightly"),
        JobFilter(tag="team=data", since=since),
        JobFilter(sort="-finished"),
        JobFilter(sort="name"),
        JobFilter(q="etl-4"),
    ]
    for where in filters:
        plan = plan_of(engine, page_query(where, 3, 50))
        assert "Index" in plan, (where, plan)
        assert "Seq Scan on jobs" not in plan, (where, plan)
        if where.q is None:  # a name search sorts its (few) matches
            assert "Sort" not in plan.replace("Incremental Sort", ""), (where, plan)


def test_dashboard_hours_on_postgres(engine: Engine) -> None:
    """The per-hour counts use date_trunc on PostgreSQL (strftime on SQLite)."""
    with Session(engine) as session:
        newest = session.scalar(select(func.max(Job.created_at)))
        assert newest is not None
        first = newest.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        found = _hours(session, first, lambda query: query)  # every project's
        expected = session.scalar(select(func.count()).where(Job.created_at >= first))
    assert len(found) == 4 and all(k.tzinfo is UTC and k.minute == 0 for k in found)
    assert sum(h.get("submitted", 0) for h in found.values()) == expected
    assert sum(h.get("failed", 0) for h in found.values()) > 0
