"""Execution leases on a real Redis, with the renewer the worker runs
(``service.task_lease``, as ``workers.execution.exclusive_run`` holds it) and a
1.5 s TTL: a lease lives only while its renewer does.

The unit tests in tests/unit/test_recovery.py use ``MemoryInFlight``, whose
leases never expire, so there a held lease turns a second delivery away
whether or not anything renews it. Here nothing but renewal keeps a lease past
its TTL, and nothing but its running out lets the next delivery in.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import redis

from jobsys.broker.inflight import lease_key
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.runtime import build_context
from jobsys.service.leases import TaskLease, task_lease
from tests.support.fixtures import make_settings
from tests.support.services import redis_url, require_redis

pytestmark = pytest.mark.integration

TTL_S = 3.0  # the renewer runs every second: a loaded machine stalls it less than 2 s
#: A second delivery comes from another machine: only the TTL tells it the holder died.
HOLDER_WORKER, NEXT_WORKER = "w1@host-a", "w2@host-b"


def hold(settings: Settings, task_id: str, says: Connection) -> None:
    """The holder, in a forked process as a worker's pool child is: it takes the
    lease with the worker's own context manager and says when it holds and loses it."""
    with task_lease(build_context(settings), task_id, worker=HOLDER_WORKER) as lease:
        assert lease is not None
        says.send(f"held {lease.holder}")
        lease.lost.wait()
        says.send("lost")
    says.send("released")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    require_redis()
    return make_settings(tmp_path, redis_url=redis_url("leases"), task_lease_ttl_s=TTL_S)


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return build_context(settings)


@pytest.fixture
def task_id(client: redis.Redis) -> Iterator[str]:
    tid = f"lease-test-{uuid.uuid4().hex}"
    yield tid
    client.delete(lease_key(tid))


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url("leases"), decode_responses=True)
    yield r
    r.close()


def holder_of(client: redis.Redis, task_id: str) -> str | None:
    return client.get(lease_key(task_id))


def held_throughout(client: redis.Redis, task_id: str, holder: str, seconds: float) -> None:
    """The lease stays ``holder``'s, looked at every 0.1 s for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert holder_of(client, task_id) == holder
        time.sleep(0.1)


def heard(says: Connection, timeout: float) -> str:
    assert says.poll(timeout), f"the holder process said nothing for {timeout} s"
    return str(says.recv())


def test_a_renewing_holder_keeps_its_lease_past_several_ttls(
    ctx: Context, client: redis.Redis, task_id: str
) -> None:
    with task_lease(ctx, task_id, worker=HOLDER_WORKER, delivery_tag="tag-1") as lease:
        assert lease is not None
        me = str(lease.holder)
        held_throughout(client, task_id, me, 2 * TTL_S)
        # A redelivery now finds a live holder: it waits out one TTL, then is dropped.
        duplicate = TaskLease(ctx, task_id, worker=NEXT_WORKER)
        began = time.monotonic()
        assert not duplicate.acquire()
        assert time.monotonic() - began >= TTL_S
        assert holder_of(client, task_id) == me and not lease.lost.is_set()
    assert holder_of(client, task_id) is None  # released when the run ended
    began = time.monotonic()
    assert duplicate.acquire() and time.monotonic() - began < TTL_S
    assert holder_of(client, task_id) == str(duplicate.holder)
    duplicate.release()


def test_a_stalled_holder_loses_its_lease_after_the_ttl_and_the_next_delivery_takes_over(
    settings: Settings, ctx: Context, client: redis.Redis, task_id: str
) -> None:
    says, child_says = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(
        target=hold, args=(settings, task_id, child_says)
    )
    proc.start()
    try:
        said, _, first = heard(says, 30).partition(" ")
        assert said == "held"
        held_throughout(client, task_id, first, 2 * TTL_S)  # its renewer runs
        os.kill(proc.pid, signal.SIGSTOP)  # frozen: its renewer stops with it
        left_s = client.pttl(lease_key(task_id)) / 1000
        assert 0 < left_s <= TTL_S
        nxt = TaskLease(ctx, task_id, worker=NEXT_WORKER)
        began = time.monotonic()
        assert nxt.acquire()  # within 4/3 TTL, or it would have given up
        waited = time.monotonic() - began
        assert waited >= left_s - 0.2  # it waited for the lease to run out, no sooner
        assert holder_of(client, task_id) == str(nxt.holder)
        nxt.start_renewing()
        # The stalled run wakes: its renewer finds another holder and gives the
        # lease up, leaving it to the new run (no renewal or release steals it).
        os.kill(proc.pid, signal.SIGCONT)
        assert heard(says, 10) == "lost"
        assert heard(says, 10) == "released"
        proc.join(timeout=30)
        assert proc.exitcode == 0
        held_throughout(client, task_id, str(nxt.holder), TTL_S)
        nxt.release()
        assert holder_of(client, task_id) is None
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


def test_taking_the_lease_restarts_the_delivery_visibility_clock_in_the_same_call(
    ctx: Context, client: redis.Redis, task_id: str
) -> None:
    """The take and the hiding of the run's own message are one pipeline: the
    message kombu lists as delivered gets a fresh score, and a message that was
    acknowledged meanwhile (not in the index) is not added back."""
    index = ctx.dispatcher.inflight.keys().unacked_index
    tag, gone = f"tag-{task_id}", f"acked-{task_id}"
    client.zadd(index, {tag: 1.0})
    try:
        lease = TaskLease(ctx, task_id, worker=HOLDER_WORKER, delivery_tag=tag)
        assert lease.acquire()
        assert holder_of(client, task_id) == str(lease.holder)
        score = client.zscore(index, tag)
        assert score is not None and score > 1.0
        # A second delivery (its own message) finds the holder, and hides its message too.
        other = ctx.dispatcher.inflight.acquire_lease(task_id, "someone", TTL_S, hide=gone)
        assert other == str(lease.holder)
        assert client.zscore(index, gone) is None
        lease.release()
        assert holder_of(client, task_id) is None
    finally:
        client.zrem(index, tag, gone)
