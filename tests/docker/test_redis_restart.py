"""Logs outlive a Redis restart: a stack on its own redis-server, which the
test stops and starts again (empty) after the job ended."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.docker import finished, step, submit
from tests.support.live import LiveStack, RedisServer, private_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[tuple[LiveStack, RedisServer]]:
    yield from private_stack(tmp_path, "restart")


def test_logs_survive_a_redis_restart(restartable: tuple[LiveStack, RedisServer]) -> None:
    stack, own_redis = restartable
    job_id = submit(stack, step("for i in 1 2 3; do echo line $i; done; sleep 0.2; echo oops >&2"))
    assert finished(stack, job_id)["status"] == "completed"
    # The worker reports the step before it removes the container and acknowledges
    # the message: restart only once nothing is held, or the restart would drop a
    # task in the worker's hands (a kombu failure that stops the worker, issue 22).
    wait_until(
        lambda: redis.Redis.from_url(own_redis.url).hlen("unacked") == 0,
        30,
        "the worker to acknowledge the step's message",
    )

    own_redis.stop()  # no persistence: every stream and key is gone
    own_redis.start()
    # (the worker may already have reconnected and declared its queues)
    assert (
        redis.Redis.from_url(own_redis.url).exists("jobsys:events", f"jobsys:events:{job_id}") == 0
    )

    with stack.http() as http:
        logs = http.get(f"/api/jobs/{job_id}/logs").json()["logs"]
        tail = http.get(f"/api/jobs/{job_id}/logs", params={"tail": 2}).json()["logs"]
    assert [(e["stream"], e["line"]) for e in logs] == [
        ("stdout", "line 1"),
        ("stdout", "line 2"),
        ("stdout", "line 3"),
        ("stderr", "oops"),
    ]
    assert [e["line"] for e in tail] == ["line 3", "oops"]
    # the live view ends at once with the stored status instead of waiting for ever
    with stack.client() as c:
        events = list(c.job(job_id).events())
    assert [e["data"]["status"] for e in events] == ["completed"]
    # and the stack goes on working on the restarted Redis: a new job runs, its
    # log is kept, and its events are written to the new (empty) Redis
    again = submit(stack, step("echo again"))
    assert finished(stack, again)["status"] == "completed"
    with stack.http() as http:
        again_logs = http.get(f"/api/jobs/{again}/logs").json()["logs"]
    assert [(e["stream"], e["line"]) for e in again_logs] == [("stdout", "again")]
    assert redis.Redis.from_url(own_redis.url).exists(f"jobsys:events:{again}") == 1
