"""Automatic chunks follow the python workers' slots, as their heartbeats report them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.service.worker_slots import function_slots


def beat(
    dispatcher: MemoryDispatcher, name: str, queues: list[str], c: int, age: float = 0
) -> None:
    ts = datetime.now(UTC).timestamp() - age
    dispatcher.beats[name] = {
        "ts": ts,
        "active": 0,
        "processed": 0,
        "queues": queues,
        "concurrency": c,
    }


def fresh(ctx: Context, **settings: object) -> Context:
    """The same context with other settings and a dispatcher of its own (no cache)."""
    return dataclasses.replace(
        ctx, settings=dataclasses.replace(ctx.settings, **settings), dispatcher=MemoryDispatcher()
    )


def test_slots_are_the_online_python_workers_concurrency(ctx: Context) -> None:
    ctx = fresh(ctx, slots_cache_s=0)
    d = ctx.dispatcher
    assert isinstance(d, MemoryDispatcher)
    assert function_slots(ctx) == ctx.settings.fallback_parallelism == 8  # nobody reports
    beat(d, "a@h", ["python", "docker"], 2)
    beat(d, "b@h", ["python"], 3)
    beat(d, "c@h", ["docker"], 4)  # runs no function chunks
    beat(d, "d@h", ["python"], 5, age=60)  # lost
    assert function_slots(ctx) == 5
    d.down = True
    assert function_slots(ctx) == 8  # Redis away: the fallback, and the submit goes on


def test_the_setting_wins_and_the_count_is_cached(ctx: Context) -> None:
    pinned = fresh(ctx, parallelism=3)
    beat(pinned.dispatcher, "a@h", ["python"], 2)  # type: ignore[arg-type]
    assert function_slots(pinned) == 3
    cached = fresh(ctx, slots_cache_s=3600)
    beat(cached.dispatcher, "a@h", ["python"], 2)  # type: ignore[arg-type]
    assert function_slots(cached) == 2
    beat(cached.dispatcher, "b@h", ["python"], 2)  # type: ignore[arg-type]
    assert function_slots(cached) == 2  # read again only after slots_cache_s


def test_a_submitted_map_is_cut_for_the_reported_slots(ctx: Context, developer: Principal) -> None:
    ctx = fresh(ctx, slots_cache_s=0)
    beat(ctx.dispatcher, "a@h", ["python"], 3)  # type: ignore[arg-type]
    spec = {"steps": [{"kind": "function", "function": "math:sqrt", "items": list(range(600))}]}
    job = service.submit_job(ctx, developer, spec)
    assert len(service.job_tasks(ctx, developer, job.id)) == 3
    one = {"steps": [{"kind": "function", "function": "math:sqrt", "items": [4]}]}
    assert len(service.job_tasks(ctx, developer, service.submit_job(ctx, developer, one).id)) == 1
