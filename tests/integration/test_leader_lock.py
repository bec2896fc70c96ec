"""The beat leader lock on a real Redis (its Lua scripts need one)."""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobsys.scheduler import LeaderLock
from tests.support.live import free_port
from tests.support.services import redis_url, require_redis

KEY = "jobsys:test:leader"


def unreachable() -> redis.Redis:
    return redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def client() -> redis.Redis:
    require_redis()
    found = redis.Redis.from_url(redis_url("leader-lock"))
    found.delete(KEY)
    return found


def test_one_leader_and_a_clean_handover(client: redis.Redis) -> None:
    a, b = LeaderLock(client, 2.0, key=KEY), LeaderLock(client, 2.0, key=KEY)
    assert a.hold() and not b.hold()
    assert a.hold()  # renewing
    assert a.holder() == a.identity
    assert 0 < client.pttl(KEY) <= 2000
    a.release()
    assert not a.held and b.hold() and b.holder() == b.identity


def test_the_lock_runs_out_when_the_holder_stops_renewing(client: redis.Redis) -> None:
    a, b = LeaderLock(client, 0.5, key=KEY), LeaderLock(client, 0.5, key=KEY)
    assert a.hold()
    time.sleep(0.6)
    assert b.hold()
    assert not a.hold()  # it notices the lock is someone else's and stands by
    assert b.holder() == b.identity


def test_without_redis_a_leader_leads_only_until_its_lock_would_expire(
    client: redis.Redis,
) -> None:
    lock = LeaderLock(client, 30.0, key=KEY)
    assert lock.hold()
    lock._lock.redis = unreachable()  # Redis is gone
    assert lock.hold()  # its lock is still good for a while: keep leading
    lock._valid_until = time.monotonic()  # by now the lock would have run out
    assert not lock.hold()
    assert not LeaderLock(unreachable(), 30.0, key=KEY).hold()


def test_a_leader_whose_lock_was_taken_meanwhile_frees_and_renews_nothing(
    client: redis.Redis,
) -> None:
    """The key lost under a leader that still believes it leads (Redis restarted
    without persistence, a failover, a long pause): another beat takes it, and
    the old leader's renewal and hand-back must leave that lock alone."""
    a, b = LeaderLock(client, 30.0, key=KEY), LeaderLock(client, 30.0, key=KEY)
    assert a.hold()
    client.delete(KEY)
    assert b.hold()
    assert a.held  # by its own clock it still leads ...
    assert not a.hold()  # ... but its renewal finds the lock is b's and stands by
    assert b.holder() == b.identity and client.pttl(KEY) > 29_000
    a._valid_until = time.monotonic() + 30  # a leader that has not noticed yet
    a.release()
    assert b.holder() == b.identity and b.hold()
