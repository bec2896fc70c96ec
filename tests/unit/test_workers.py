"""The worker list: online from inspect or fresh heartbeats, lost when they stop."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import pytest

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.service import workers as workers_service


def test_heartbeats_make_workers_online_then_lost_then_forgotten(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    service.record_heartbeat(ctx, "a@host", active=1, processed=5)
    now = datetime.now(UTC).timestamp()
    dispatcher.beats["b@host"] = {"ts": now - 60, "active": 0, "processed": 9}
    dispatcher.beats["c@host"] = {"ts": now - 2 * 24 * 3600, "active": 0, "processed": 1}
    found = {w.name: w for w in service.list_workers(ctx, SYSTEM)}
    assert found["a@host"].state == "online" and found["a@host"].active == 1
    assert found["b@host"].state == "lost" and found["b@host"].processed == 9
    assert "c@host" not in found and "c@host" not in dispatcher.beats
    assert found["b@host"].to_dict()["last_heartbeat"] is not None


class FrozenClock(datetime):
    """``datetime`` whose ``now`` is whatever the test set, so the 10 s
    boundary is tested with no sleeps."""

    at: float = 1_800_000_000.0

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> FrozenClock:
        return cls.fromtimestamp(cls.at, tz)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> type[FrozenClock]:
    monkeypatch.setattr(workers_service, "datetime", FrozenClock)
    monkeypatch.setattr(FrozenClock, "at", FrozenClock.at)  # each test starts afresh
    return FrozenClock


@pytest.mark.parametrize(("silent_s", "state"), [(9.0, "online"), (11.0, "lost")])
def test_a_worker_is_lost_between_9_and_11_seconds_after_its_last_heartbeat(
    ctx: Context, clock: type[FrozenClock], silent_s: float, state: str
) -> None:
    assert workers_service.LOST_AFTER_S == 10.0  # the README's and the page's number
    service.record_heartbeat(ctx, "a@host", active=0, processed=1)
    beat_at = clock.at
    clock.at = beat_at + silent_s
    (worker,) = service.list_workers(ctx, SYSTEM)
    assert (worker.name, worker.state) == ("a@host", state)
    assert worker.last_heartbeat == datetime.fromtimestamp(beat_at, UTC)


def test_a_lost_worker_is_online_again_after_its_next_heartbeat(
    ctx: Context, clock: type[FrozenClock]
) -> None:
    service.record_heartbeat(ctx, "a@host", active=0, processed=1)
    states = []
    for _ in range(3):
        clock.at += 11.0
        states.append(service.list_workers(ctx, SYSTEM)[0].state)
        service.record_heartbeat(ctx, "a@host", active=0, processed=1)
        clock.at += 9.0
        states.append(service.list_workers(ctx, SYSTEM)[0].state)
    assert states == ["lost", "online"] * 3


def test_a_workers_isolation_is_listed_with_why(ctx: Context) -> None:
    why = "bubblewrap (bwrap) is not installed"
    service.record_heartbeat(ctx, "a@host", active=0, processed=0, isolation=("unavailable", why))
    service.record_heartbeat(ctx, "d@host", active=0, processed=0)  # a Docker-only worker
    found = {w.name: w.to_dict() for w in service.list_workers(ctx, SYSTEM)}
    assert (found["a@host"]["isolation"], found["a@host"]["isolation_note"]) == ("unavailable", why)
    assert (found["d@host"]["isolation"], found["d@host"]["isolation_note"]) == (None, "")
