"""A job's event stream is capped at 10,000 events (README, "Logs are stored in
the database ... the Redis stream (capped at 10,000 events per job ...)"), on a
real Redis: trimming is Redis's own XADD MAXLEN, which a fake need not mimic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobsys import service
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.broker.events import RedisEventBus, job_stream
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.store.db import make_session_factory
from tests.support.services import redis_url, require_redis

pytestmark = pytest.mark.integration

#: What the README promises, written out rather than imported from the code.
CAP = 10_000


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    """A worker's context as far as publishing goes: its event bus on real Redis."""
    require_redis()
    settings = Settings.from_env(
        {},
        data_dir=str(tmp_path),
        secret_key="integration-test-secret-0123456789",
        redis_url=redis_url("event-cap"),
    )
    events = RedisEventBus.from_url(settings.redis_url)
    yield Context(
        settings=settings,
        sessions=make_session_factory(settings),
        dispatcher=MemoryDispatcher(),
        events=events,
    )
    client: redis.Redis = events.client
    for key in client.scan_iter("jobsys:events*"):
        client.delete(key)


def stored_lines(client: redis.Redis, job_id: str) -> list[str]:
    return [json.loads(f[b"data"])["line"] for _id, f in client.xrange(job_stream(job_id))]


def stored_types(client: redis.Redis, job_id: str) -> list[str]:
    return [f[b"type"].decode() for _id, f in client.xrange(job_stream(job_id))]


def test_the_stream_keeps_exactly_the_newest_10000_events(ctx: Context) -> None:
    client: redis.Redis = ctx.events.client  # type: ignore[attr-defined]
    job_id = str(uuid.uuid4())
    lines = [f"line {n}" for n in range(CAP + 537)]

    def publish(start: int, stop: int) -> None:
        # As the workers do: a chunk's lines in one call, a container's line by line.
        records = [service.LogRecord(line) for line in lines[start:stop]]
        service.publish_logs(ctx, job_id, None, records)

    for start in range(0, CAP, 500):
        publish(start, start + 500)
    assert client.xlen(job_stream(job_id)) == CAP  # nothing trimmed up to the cap
    assert stored_lines(client, job_id)[0] == "line 0"

    publish(CAP, CAP + 1)  # one more: the oldest goes
    assert client.xlen(job_stream(job_id)) == CAP
    assert stored_lines(client, job_id)[0] == "line 1"

    for n in range(CAP + 1, CAP + 37):
        publish(n, n + 1)
    publish(CAP + 37, len(lines))
    # Exactly the cap (an approximate trim, MAXLEN ~, keeps up to a stream node
    # more), and the newest events in order.
    assert client.xlen(job_stream(job_id)) == CAP
    assert stored_lines(client, job_id) == lines[-CAP:]
    # The status events the workers publish count towards the same cap.
    ctx.events.publish(job_id, "status", {"job_id": job_id, "status": "running"})
    assert client.xlen(job_stream(job_id)) == CAP
    assert stored_types(client, job_id)[-1] == "status"
    assert stored_types(client, job_id).count("log") == CAP - 1
