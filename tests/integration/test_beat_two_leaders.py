"""Two beats that both believe they lead (a paused leader waking up, a network
partition hiding the lock) fire the same due tick at the same moment on
PostgreSQL: the tick still starts exactly one job and records exactly one run.

The lock is bypassed on purpose: each ``DatabaseScheduler`` is a real one,
with its own Celery app, engine and Redis clients, whose ``leader.hold()``
always answers yes. A barrier releases both ``tick()`` calls at once, and a spy
on the per-schedule firing proves that both beats really reached the same
schedule in the same round, so the test cannot pass by one beat simply
finishing before the other looked."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from jobsys.auth import Principal
from jobsys.celery_app import make_celery
from jobsys.config import Settings
from jobsys.scheduler import DatabaseScheduler
from jobsys.service import create_schedule, firing, update_schedule
from jobsys.store.models import Job, ScheduleRun, utcnow
from jobsys.testing import fresh_database
from tests.support.live import SECRET
from tests.support.services import postgres_schema_url, redis_url, require_postgres, require_redis

pytestmark = pytest.mark.integration

ADMIN = Principal(name="ops", role="admin")
ROUNDS = 6
INTERVAL_S = 3600
UNIQUE_TICK = "uq_schedule_runs_tick"
BROKER_URL = redis_url("two-beats")  # a database of its own, flushed around the test
SPEC = {
    "name": "tick",
    "steps": [{"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}],
}


def beat(settings: Settings) -> DatabaseScheduler:
    """A beat scheduler that always believes it leads."""
    scheduler = DatabaseScheduler(app=make_celery(settings))
    assert scheduler.leader is not None
    scheduler.leader.hold = lambda: True  # type: ignore[method-assign]
    return scheduler


def fire_at_once(*beats: DatabaseScheduler) -> None:
    """One ``tick()`` of each beat, all released by one barrier."""
    barrier = threading.Barrier(len(beats))
    errors: list[BaseException] = []

    def fire(scheduler: DatabaseScheduler) -> None:
        try:
            barrier.wait(timeout=10)
            scheduler.tick()
        except BaseException as exc:  # reported in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(s,)) for s in beats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a beat's tick hung"


@pytest.fixture
def two_beats(tmp_path: Path) -> Iterator[tuple[DatabaseScheduler, DatabaseScheduler]]:
    require_redis()
    require_postgres()
    database_url = postgres_schema_url("beat_two_leaders")
    fresh_database(database_url)

    def settings(name: str) -> Settings:
        # A data folder each: two distinct settings, so two contexts (engines,
        # Redis clients), as two beat processes would have.
        (tmp_path / name).mkdir()
        return Settings.from_env(
            {},
            redis_url=BROKER_URL,
            database_url=database_url,
            secret_key=SECRET,
            data_dir=str(tmp_path / name),
            docker_images=("jobsys/*",),
        )

    redis.Redis.from_url(BROKER_URL).flushdb()
    a, b = beat(settings("a")), beat(settings("b"))
    assert a._ctx is not b._ctx
    try:
        yield a, b
    finally:
        for scheduler in (a, b):
            scheduler.leader = None  # nothing to hand back: it never held the lock
            scheduler.close()
        redis.Redis.from_url(BROKER_URL).flushdb()


class WithoutRowLock(sqlalchemy.Select[Any]):
    """A ``select`` whose ``FOR UPDATE`` is dropped (as SQLite drops it)."""

    inherit_cache = True

    def with_for_update(self, **_: Any) -> WithoutRowLock:
        return self


@pytest.mark.parametrize(
    "defence", ["row-lock-and-constraint", "row-lock-alone", "constraint-alone"]
)
def test_two_leaders_firing_one_tick_at_once_start_one_job(
    two_beats: tuple[DatabaseScheduler, DatabaseScheduler],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    defence: str,
) -> None:
    """Two defences, each enough alone: the schedule row locked for the firing
    (the second beat waits, then finds the tick already moved on), and the
    unique (schedule, tick) run, which fails a second firing as a whole, its
    job with it. Each is taken away in turn (the constraint dropped from the
    table; ``FOR UPDATE`` dropped from the firing's query, as SQLite ignores it)."""
    a, b = two_beats
    ctx = a._ctx
    if defence == "row-lock-alone":
        with ctx.sessions.begin() as s:
            s.execute(text(f"ALTER TABLE schedule_runs DROP CONSTRAINT {UNIQUE_TICK}"))
    if defence == "constraint-alone":
        monkeypatch.setattr(firing, "select", WithoutRowLock)
    reached: Counter[str] = Counter()  # schedule id -> beats that went to fire it
    real_fire = firing._fire

    def spy(ctx: Any, schedule_id: str, now: Any) -> Any:
        reached[schedule_id] += 1
        return real_fire(ctx, schedule_id, now)

    monkeypatch.setattr(firing, "_fire", spy)
    caplog.set_level(logging.WARNING, logger=firing.__name__)

    raced = 0
    for round_ in range(ROUNDS):
        # Due now: its next tick is an hour boundary at least 5 s past (made as
        # if an hour and 5 s ago, so not the one about to come)
        schedule = create_schedule(
            ctx,
            ADMIN,
            {"name": f"race-{round_}", "interval_s": INTERVAL_S, "spec": SPEC, "overlap": "allow"},
            now=utcnow() - timedelta(seconds=INTERVAL_S + 5),
        )
        assert schedule.next_fire_at is not None and schedule.next_fire_at <= utcnow()
        fire_at_once(a, b)
        raced += reached[schedule.id] == 2
        with ctx.sessions() as s:
            runs = list(
                s.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == schedule.id))
            )
        assert [(r.tick, r.outcome) for r in runs] == [(schedule.next_fire_at, "submitted")], (
            f"round {round_}: {len(runs)} runs for one tick"
        )
        # done with it: an hour boundary passed in a later round must not fire it again
        update_schedule(ctx, ADMIN, schedule.id, {"enabled": False})

    # Every job has its run and every run its job: no job whose run was refused.
    with ctx.sessions() as s:
        jobs = set(s.scalars(select(Job.id)))
        run_jobs = list(s.scalars(select(ScheduleRun.job_id)))
    assert len(run_jobs) == ROUNDS and None not in run_jobs
    assert sorted(jobs) == sorted(run_jobs)
    # Both beats went for the same schedule in the same round (else nothing raced).
    assert raced >= ROUNDS // 2, f"only {raced} of {ROUNDS} rounds had both beats fire"
    refused = sum("already fired by another scheduler" in r.message for r in caplog.records)
    if defence == "constraint-alone":  # it was the constraint that stopped the second
        assert refused >= 1, "no second firing reached the constraint"
    else:  # the row lock made the second beat wait and find nothing left to fire
        assert refused == 0
    print(
        f"\n{defence}: both beats fired in {raced} of {ROUNDS} rounds; "
        f"the constraint refused {refused}"
    )


def test_the_database_refuses_a_second_run_of_one_tick(
    two_beats: tuple[DatabaseScheduler, DatabaseScheduler],
) -> None:
    """The backstop itself: a second run row for a tick fails, whoever writes it."""
    ctx = two_beats[0]._ctx
    schedule = create_schedule(
        ctx,
        ADMIN,
        {"name": "once", "interval_s": INTERVAL_S, "spec": SPEC},
        now=utcnow() - timedelta(seconds=INTERVAL_S - 1),
    )
    tick = schedule.next_fire_at
    run = {"schedule_id": schedule.id, "tick": tick, "trigger": "schedule", "outcome": "skipped"}
    with ctx.sessions.begin() as s:
        s.add(ScheduleRun(**run))
    with pytest.raises(IntegrityError, match=UNIQUE_TICK), ctx.sessions.begin() as s:
        s.add(ScheduleRun(**run))
