"""The worker's prefork pool cleans up after a pool process whose death its
event loop missed (workers/pool.py), on a real billiard pool."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from celery.concurrency import get_implementation
from kombu.asynchronous import Hub

from jobsys.celery_app import make_celery
from jobsys.config import Settings
from workers import pool as worker_pool


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


@pytest.fixture
def pool(hub: Hub) -> Iterator[worker_pool.AsynPool]:
    started = worker_pool.AsynPool(processes=2, threads=False)
    started.register_with_event_loop(hub)
    yield started
    started.terminate()


def test_the_jobsys_worker_runs_this_pool() -> None:
    app = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert get_implementation(app.conf.worker_pool) is worker_pool.TaskPool
    assert worker_pool.TaskPool.Pool is worker_pool.AsynPool


def test_the_reaper_runs_on_the_event_loop_beside_the_pools_own_timer(
    pool: worker_pool.AsynPool,
) -> None:
    timers = {handler.__name__: every for handler, every in pool.timers.items()}
    assert timers == {"maintain_pool": 5.0, "reap_dead_processes": worker_pool.REAP_EVERY_S}
    assert worker_pool.REAP_EVERY_S < 5.0


def test_a_killed_process_the_event_loop_missed_is_replaced(
    pool: worker_pool.AsynPool, hub: Hub
) -> None:
    victim, other = list(pool._pool)
    assert pool.reap_dead_processes() is False  # all alive: nothing to do
    # What the drills saw: the sentinel never reaches the loop.
    pool._untrack_child_process(victim, hub)
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert victim.exitcode == -signal.SIGKILL
    assert victim in pool._pool  # dead, and still counted as a pool process

    assert pool.reap_dead_processes() is True
    pids = [proc.pid for proc in pool._pool]
    assert victim.pid not in pids and other.pid in pids and len(pids) == 2
    assert pool.reap_dead_processes() is False
