"""What a publisher (the web app) pays Redis per request: one pooled client
for the dispatcher's own reads, which survives a Redis restart, and no result
subscriptions for the tasks it sends (nobody there waits on them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobsys.broker.canvas import ChunkPlan, StepPlan
from jobsys.broker.dispatch import CeleryDispatcher
from jobsys.celery_app import make_celery
from jobsys.config import Settings
from jobsys.errors import DispatchError
from jobsys.testing import free_port
from tests.support.live import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def publisher(url: str) -> CeleryDispatcher:
    settings = Settings.from_env({}, redis_url=url, secret_key="publisher-test-secret-0123456789")
    return CeleryDispatcher(make_celery(settings, publisher=True))


def connections_made(url: str) -> int:
    """How many connections the server has accepted since it started."""
    return int(redis.Redis.from_url(url).info("stats")["total_connections_received"])


def test_the_dispatcher_keeps_one_redis_client_and_recovers_after_a_restart(
    own_redis: RedisServer,
) -> None:
    dispatcher = publisher(own_redis.url)
    before = connections_made(own_redis.url)
    for _ in range(5):
        assert dispatcher.queue_lengths() == {"docker": 0, "python": 0}
        assert not dispatcher.is_cancelled("job-1")
    # one pooled connection (plus the one counting), not one per call
    assert connections_made(own_redis.url) - before == 2

    own_redis.stop()
    with pytest.raises(DispatchError, match="unreachable"):
        dispatcher.queue_lengths()
    own_redis.start()
    # the pooled socket died with the server: the next call reconnects by itself
    assert dispatcher.queue_lengths() == {"docker": 0, "python": 0}
    dispatcher.cancel("job-1", [])
    assert dispatcher.is_cancelled("job-1")


def test_publishing_subscribes_to_no_results(own_redis: RedisServer) -> None:
    dispatcher = publisher(own_redis.url)
    server = redis.Redis.from_url(own_redis.url)
    server.config_resetstat()
    docker = StepPlan(job_id="j1", step_id="s1", kind="docker", task_id=str(uuid.uuid4()))
    chunks = [
        ChunkPlan(task_id=str(uuid.uuid4()), index=i, start=i, stop=i + 1, items=[i])
        for i in range(3)
    ]
    function = StepPlan(
        job_id="j2", step_id="s2", kind="function", task_id=str(uuid.uuid4()), chunks=chunks
    )
    dispatcher.publish(docker)
    dispatcher.publish(function)
    assert dispatcher.queue_lengths() == {"docker": 1, "python": 3}  # all sent
    stats = server.info("commandstats")
    assert "cmdstat_subscribe" not in stats and "cmdstat_unsubscribe" not in stats
    # the chord's counter is still kept for the worker that ends it
    assert len(server.keys("celery-taskset-meta-*.s")) == 1  # its size
