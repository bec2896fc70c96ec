"""Beat wakes shortly before a user schedule's tick, renews its leadership,
then sleeps out the rest and fires the tick itself: a pass that begins before
the tick fires it, instead of the tick waiting for the pass after a whole sleep
(which Celery's loop ends late by its own work)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from jobsys.auth import Principal
from jobsys.celery_app import make_celery
from jobsys.scheduler import DatabaseScheduler
from jobsys.service import create_schedule
from jobsys.store.models import Schedule, ScheduleRun, utcnow
from tests.support.fixtures import make_settings
from tests.support.services import redis_url, require_redis

pytestmark = pytest.mark.integration

BROKER_URL = redis_url("beat-wake")
SPEC = {"name": "tick", "steps": [{"kind": "function", "function": "builtins:abs", "items": [1]}]}
LEAD_S = 0.4


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[DatabaseScheduler]:
    require_redis()
    redis.Redis.from_url(BROKER_URL).flushdb()
    settings = make_settings(tmp_path, redis_url=BROKER_URL)
    beat = DatabaseScheduler(app=make_celery(settings))
    assert beat.leader is not None
    beat.leader.hold = lambda: True  # type: ignore[method-assign]
    # Long enough that a late or missing sleep-to-the-tick shows, and passes that
    # are not bounded by the usual one-second poll.
    beat.lead_s, beat.poll_s = LEAD_S, 10.0
    try:
        yield beat
    finally:
        beat.leader = None
        beat.close()
        redis.Redis.from_url(BROKER_URL).flushdb()


def test_a_pass_that_begins_before_the_tick_sleeps_to_it_and_fires_it(
    scheduler: DatabaseScheduler,
) -> None:
    ctx = scheduler._ctx
    create_schedule(ctx, Principal("ops", "admin"), {"name": "s", "interval_s": 3, "spec": SPEC})
    began: list[float] = []  # wall clock at the start of each pass
    asked: list[tuple[float, float]] = []  # (sleep asked for, seconds to the tick then)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        began.append(time.time())
        interval = scheduler.tick()
        with ctx.sessions() as s:
            runs = list(s.scalars(select(ScheduleRun)))
            due = s.scalar(select(Schedule.next_fire_at))
        if runs:
            break
        assert due is not None
        asked.append((interval, (due - utcnow()).total_seconds()))
        time.sleep(interval)
    else:
        pytest.fail(f"no tick fired in 15 s; passes asked to sleep {asked}")
    (run,) = runs
    # The pass that fired the tick began before it, and fired it no earlier.
    assert began[-1] < run.tick.timestamp() <= run.fired_at.timestamp(), (began, run.tick)
    # Every sleep ended at least most of the lead before the tick it waited for.
    assert asked and all(wait < to_tick - LEAD_S / 2 for wait, to_tick in asked), asked
