"""Two real ``celery beat`` processes on the jobsys scheduler against one Redis
and one PostgreSQL: every tick fires and starts exactly one job, the stand-by
takes over when the leader is killed (missed ticks caught up, none lost), at
once when the leader stops cleanly (far sooner than the lock's TTL), a disabled
schedule stops, and an edited one follows its new timing."""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from jobsys import service
from jobsys.auth import Principal
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.runtime import build_context
from jobsys.scheduler import LEADER_KEY, DatabaseScheduler
from jobsys.stack import child_env
from jobsys.store.models import Job, ScheduleRun, utcnow
from jobsys.testing import fresh_database
from tests.support.fixtures import make_settings
from tests.support.live import CELERY, SECRET, wait_until
from tests.support.services import (
    postgres_schema_url,
    redis_url,
    require_postgres,
    require_redis,
)
from tests.support.specs import docker_spec

pytestmark = pytest.mark.integration

ADMIN = Principal(name="ops", role="admin")
#: The kill drill waits this out, so it is short.
LOCK_TTL_S = 3.0
#: The clean-stop test's lock: long, so a hand-over by expiry cannot pass for one at once.
LONG_LOCK_TTL_S = 30.0
#: A clean stop hands over within this (SIGTERM, beat's shutdown, a 0.5 s stand-by poll).
HANDOVER_S = 6.0
INTERVAL_S = 2
#: never run: no worker takes the jobs the beats start
SPEC = {**docker_spec("true"), "name": "tick"}


@dataclass
class Beats:
    settings: Settings
    ctx: Context
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]]

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv = [*CELERY, "beat", "-l", "INFO"]
        argv += ["-S", "jobsys.scheduler:DatabaseScheduler"]
        log = (self.log_dir / f"beat-{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            env=child_env(self.settings),
            cwd=self.log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def leader_pid(self) -> int | None:
        value = redis.Redis.from_url(self.settings.redis_url).get(LEADER_KEY)
        return int(value.decode().split(":")[1]) if value else None

    def runs(self) -> list[ScheduleRun]:
        with self.ctx.sessions() as s:
            return list(s.scalars(select(ScheduleRun).order_by(ScheduleRun.tick)))

    def log(self, name: str) -> str:
        return (self.log_dir / f"beat-{name}.log").read_text()

    def assert_one_job_per_run(self) -> None:
        """Each recorded run of a tick started a job, its own, and no job exists
        without its run (a second firing of a tick, refused, leaves no job)."""
        with self.ctx.sessions() as s:
            runs = list(s.scalars(select(ScheduleRun)))
            jobs = list(s.scalars(select(Job.id)))
        assert runs and {r.outcome for r in runs} == {"submitted"}
        assert sorted(str(r.job_id) for r in runs) == sorted(jobs)


@pytest.fixture
def beats(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Beats]:
    """Beats with a lock TTL of ``LOCK_TTL_S``, or the test's indirect parameter."""
    require_redis()
    require_postgres()
    database_url = postgres_schema_url("beat_test")
    settings = make_settings(
        tmp_path,
        redis_url=redis_url("beat"),
        database_url=database_url,
        secret_key=SECRET,
        docker_images=("jobsys/*",),
        beat_lock_ttl_s=getattr(request, "param", LOCK_TTL_S),
    )
    redis.Redis.from_url(settings.redis_url).flushdb()
    fresh_database(database_url)
    found = Beats(settings, build_context(settings), tmp_path, {})
    try:
        yield found
    finally:
        for proc in found.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in found.procs.values():
            proc.wait(timeout=15)
        redis.Redis.from_url(settings.redis_url).flushdb()
        if os.environ.get("JOBSYS_TEST_SHOW_LOGS"):
            for log in sorted(tmp_path.glob("beat-*.log")):
                print(f"---- {log.name} ----\n{log.read_text()[-4000:]}")


def seconds(moment: datetime) -> float:
    return moment.timestamp()


@pytest.mark.slow
def test_two_beats_fire_each_tick_once_through_a_leader_kill(beats: Beats) -> None:
    data = {"name": "every-2s", "interval_s": INTERVAL_S, "spec": SPEC}
    created = service.create_schedule(
        beats.ctx, ADMIN, {**data, "catch_up": "all", "overlap": "allow"}
    )
    first = beats.start("a")
    wait_until(lambda: beats.leader_pid() == first.pid, 30, "beat a to lead")
    beats.start("b")
    time.sleep(16)

    # Kill the leader without letting it hand the lock back.
    killed_at = time.monotonic()
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    standby = beats.procs["b"].pid
    wait_until(lambda: beats.leader_pid() == standby, LOCK_TTL_S + 5, "beat b to take over")
    takeover_s = time.monotonic() - killed_at
    time.sleep(12)

    # Disable: nothing fires after this.
    disabled_at = utcnow()
    service.update_schedule(beats.ctx, ADMIN, created.id, {"enabled": False})
    time.sleep(2 * INTERVAL_S + 1)
    runs = beats.runs()
    assert runs and all(r.fired_at <= disabled_at + timedelta(seconds=0.5) for r in runs)

    # Every tick from the first to the last: no gap at the takeover (the lock
    # outlives the kill by at least one 2 s tick, which the new leader catches
    # up), and one job for each run.
    ticks = [seconds(r.tick) for r in runs]
    expected = list(range(int(ticks[0]), int(ticks[-1]) + 1, INTERVAL_S))
    assert ticks == expected, f"ticks {ticks}"
    assert len(runs) >= 14
    beats.assert_one_job_per_run()
    assert takeover_s <= LOCK_TTL_S + 1.5, f"takeover took {takeover_s:.2f} s"
    on_time = [(r.fired_at - r.tick).total_seconds() for r in runs if r.trigger == "schedule"]
    assert statistics.median(on_time) < 1.0, on_time
    print(
        f"\n{len(runs)} ticks; takeover {takeover_s:.2f} s after the kill "
        f"(lock TTL {LOCK_TTL_S} s); "
        f"on-time lateness median {statistics.median(on_time) * 1000:.1f} ms, "
        f"worst {max(on_time) * 1000:.1f} ms; worst catch-up "
        f"{max((r.fired_at - r.tick).total_seconds() for r in runs):.2f} s"
    )

    # Edit to a 3 s interval and enable again: the next ticks follow it.
    edited_at = utcnow()
    edited = service.update_schedule(
        beats.ctx, ADMIN, created.id, {"interval_s": 3, "enabled": True}
    )
    assert edited.next_fire_at is not None and seconds(edited.next_fire_at) % 3 == 0
    time.sleep(7)
    after = [r for r in beats.runs() if r.tick > edited_at]
    assert len(after) >= 2
    assert all(seconds(r.tick) % 3 == 0 for r in after)
    gaps = {round(seconds(b.tick) - seconds(a.tick)) for a, b in itertools.pairwise(after)}
    assert gaps == {3}
    # The static housekeeping entries of beat_schedule.py run on the leader only.
    standing_by, led, _ = (beats.log_dir / "beat-b.log").read_text().partition("now the leader")
    assert led and "Sending due task" not in standing_by
    assert "Sending due task jobsys-outbox-sweep" in (beats.log_dir / "beat-a.log").read_text()


@pytest.mark.parametrize("beats", [LONG_LOCK_TTL_S], indirect=True, ids=["lock-ttl-30s"])
def test_a_clean_stop_hands_the_lock_over_at_once(beats: Beats) -> None:
    data = {"name": "every-1s", "interval_s": 1, "spec": SPEC}
    created = service.create_schedule(
        beats.ctx, ADMIN, {**data, "overlap": "allow", "catch_up": "all"}
    )
    procs = {beats.start("a").pid: "a", beats.start("b").pid: "b"}
    leader = procs[wait_until(beats.leader_pid, 30, "a beat to lead")]
    standby = "b" if leader == "a" else "a"
    first, second = beats.procs[leader], beats.procs[standby]
    # Alembic's lines come from the scheduler's set-up; its first poll follows at once.
    wait_until(lambda: "transactional DDL" in beats.log(standby), 30, "the stand-by to start")
    wait_until(lambda: len(beats.runs()) >= 1, 10, "the leader to fire")
    time.sleep(2 * DatabaseScheduler.standby_poll_s)  # the stand-by has asked for the lock
    assert beats.leader_pid() == first.pid  # and did not get it

    stopped = time.monotonic()
    first.terminate()  # celery beat's normal shutdown: the scheduler hands the lock back
    wait_until(lambda: beats.leader_pid() == second.pid, HANDOVER_S, "the stand-by to take over")
    handover_s = time.monotonic() - stopped
    count = len(beats.runs())
    wait_until(lambda: len(beats.runs()) > count, 10, "the new leader to fire")
    assert first.wait(timeout=15) == 0
    service.update_schedule(beats.ctx, ADMIN, created.id, {"enabled": False})  # quiet now
    os.killpg(second.pid, signal.SIGKILL)  # done with it; the fixture flushes its lock

    # Every tick from the first to the last, through the hand-over, each with its job.
    ticks = [seconds(r.tick) for r in beats.runs()]
    assert ticks == list(range(int(ticks[0]), int(ticks[-1]) + 1)), f"ticks {ticks}"
    beats.assert_one_job_per_run()
    print(f"\nhand-over {handover_s:.2f} s after SIGTERM (lock TTL {LONG_LOCK_TTL_S:g} s)")
