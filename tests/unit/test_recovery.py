"""Execution leases and the lost-task sweep on SQLite and an in-memory broker
(the drills in tests/reliability do the same against real processes)."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest
from sqlalchemy import update

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.service.leases import Holder, TaskLease
from jobsys.service.recovery import TASK_LOST
from jobsys.states import JobStatus
from jobsys.store.models import Job, Step, TaskRun
from tests.support.specs import docker_spec, function_spec


@pytest.fixture
def fast(ctx: Context) -> Context:
    """Leases of 60 ms (the waits; ``MemoryInFlight`` never expires a lease),
    and tasks lost after 5 s unaccounted for."""
    settings = replace(ctx.settings, task_lease_ttl_s=0.06, lost_task_grace_s=5.0)
    return replace(ctx, settings=settings)


def test_a_delivery_that_finds_the_lease_held_waits_one_ttl_then_is_dropped(
    fast: Context, dispatcher: MemoryDispatcher
) -> None:
    """Only the waiting and the hand-over on release: the fake's leases never run
    out, so nothing here renews. That a renewing holder keeps its lease and a
    stalled one loses it is tested on Redis in tests/integration/test_leases_redis.py."""
    first = TaskLease(fast, "t1", worker="w1@a", delivery_tag="tag-1")
    assert first.acquire()
    assert dispatcher.inflight.hidden == ["tag-1"]  # its message hidden at once
    second = TaskLease(fast, "t1", worker="w2@b")
    began = time.monotonic()
    assert not second.acquire()  # waited out one TTL and gave up
    assert time.monotonic() - began >= 0.06
    first.release()
    assert second.acquire() and dispatcher.inflight.leases["t1"] == str(second.holder)


def test_a_dead_pool_process_lease_is_taken_over_at_once(
    fast: Context, dispatcher: MemoryDispatcher
) -> None:
    dead = Holder("w1@a", 2**22 + 12345, "old")  # no such pid
    dispatcher.inflight.leases["t1"] = str(dead)
    patient = replace(fast, settings=replace(fast.settings, task_lease_ttl_s=30))
    lease = TaskLease(patient, "t1", worker="w1@a")
    began = time.monotonic()
    assert lease.acquire() and time.monotonic() - began < 1
    assert Holder.parse(dispatcher.inflight.leases["t1"]) == lease.holder
    # on another machine only the TTL tells: not taken over
    other = Holder("w9@z", os.getpid(), "x")
    assert not other.is_dead_here("w1@a")


def test_the_sweep_fails_a_lost_chunk_and_ends_its_step(
    fast: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(fast, developer, function_spec([1, 2, 3, 4], chunk_size=2))
    first, second = dispatcher.published[0].chunks
    service.start_task(fast, first.task_id, "w1")
    service.finish_task(
        fast, first.task_id, ok=True, results=[{"ok": True, "value": 1}] * 2, failed_items=0
    )
    service.start_task(fast, second.task_id, "w2")  # ... and w2 dies, its message gone
    swept = service.sweep_lost_tasks(fast)
    assert swept.lost == ()  # unaccounted for only from now on
    dispatcher.inflight.clock_offset_s = 6.0
    swept = service.sweep_lost_tasks(fast)
    assert swept.lost == (second.task_id,) and swept.steps == (job.steps[0].id,)
    done = service.get_job(fast, developer, job.id)
    assert done.status == "failed"
    assert "1 of 2 chunks did not complete; chunk 1: lost while running on w2" in done.error
    results = service.job_results(fast, developer, job.id)["results"]
    assert [r["error"]["type"] for r in results[2:]] == [TASK_LOST, TASK_LOST]
    assert service.sweep_lost_tasks(fast) == service.Swept()


def test_the_sweep_spares_tasks_that_are_accounted_for(
    fast: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(fast, developer, function_spec([1, 2, 3], chunk_size=1))
    a, b, c = dispatcher.published[0].chunks
    dispatcher.inflight.leases[a.task_id] = "w|1|x"  # running somewhere
    dispatcher.inflight.delivered.add(b.task_id)  # with a worker, maybe a dead one
    dispatcher.inflight.queued["python"] = {c.task_id}  # waiting
    for offset in (0.0, 60.0):
        dispatcher.inflight.clock_offset_s = offset
        assert service.sweep_lost_tasks(fast).lost == ()
    dispatcher.inflight.queued.clear()  # the queue was purged: c is lost, the others not
    service.sweep_lost_tasks(fast)
    dispatcher.inflight.clock_offset_s = 120.0
    assert service.sweep_lost_tasks(fast).lost == (c.task_id,)
    assert service.get_job(fast, developer, job.id).status == "queued"  # a, b still to run


def test_a_lost_docker_task_fails_its_job_with_the_reason(
    fast: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(fast, developer, docker_spec())
    service.sweep_lost_tasks(fast)
    dispatcher.inflight.clock_offset_s = 6.0
    assert service.sweep_lost_tasks(fast).lost == (dispatcher.published[0].task_id,)
    done = service.get_job(fast, developer, job.id)
    assert done.status == "failed" and "lost before it started" in done.error


def test_steps_and_jobs_left_behind_by_a_lost_worker_are_settled(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    now = replace(ctx, settings=replace(ctx.settings, lost_task_grace_s=0.0))
    mapped = service.submit_job(now, developer, function_spec([1, 2], chunk_size=1))
    for chunk in dispatcher.published[0].chunks:  # the chord callback never comes
        service.start_task(now, chunk.task_id, "w")
        service.finish_task(now, chunk.task_id, ok=True, results=[{"ok": True, "value": 1}])
    # ... and is not needed: the last chunk's report ended the step and the job.
    assert service.get_job(now, developer, mapped.id).status == "completed"
    with now.sessions.begin() as session:  # as a worker of old left it: step and job running
        session.execute(
            update(Step)
            .where(Step.job_id == mapped.id)
            .values(status=JobStatus.RUNNING.value, finished_at=None)
        )
        session.execute(
            update(Job)
            .where(Job.id == mapped.id)
            .values(status=JobStatus.RUNNING.value, finished_at=None)
        )
    docker = service.submit_job(now, developer, docker_spec())
    task = dispatcher.published[1].task_id
    service.start_task(now, task, "w")
    service.finish_task(now, task, ok=True)  # ... and the worker died before complete_step
    between = service.submit_job(now, developer, docker_spec())
    with now.sessions.begin() as session:  # its step ended, the job never followed
        session.execute(
            update(Step)
            .where(Step.job_id == between.id)
            .values(status=JobStatus.FAILED.value, error="exit 3")
        )
        session.execute(
            update(Job).where(Job.id == between.id).values(status=JobStatus.RUNNING.value)
        )
    dispatcher.inflight.delivered.update(p.task_id for p in dispatcher.published)
    swept = service.sweep_lost_tasks(now)
    assert set(swept.steps) == {mapped.steps[0].id, docker.steps[0].id}
    assert swept.jobs == (between.id,)
    assert service.get_job(now, developer, mapped.id).status == "completed"
    assert service.get_job(now, developer, docker.id).status == "completed"
    stopped = service.get_job(now, developer, between.id)
    assert stopped.status == "failed" and stopped.error == "step 1 failed: exit 3"


def test_a_chunk_that_raises_or_is_given_up_still_ends(
    fast: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task body itself (run in-process): a chunk that raises past its items,
    and one delivered again after its worker died too often, both end with an
    error for each item and a return value that counts in the chord."""
    from workers import function_step

    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(function_step, "worker_context", lambda: fast)
    monkeypatch.setattr(function_step, "_run_chunk_task", broken)
    job = service.submit_job(fast, developer, function_spec([1, 2, 3, 4], chunk_size=2))
    plan = dispatcher.published[0]
    first, second = plan.chunks
    ran = function_step.run_function_chunk.apply(
        args=(job.id, plan.step_id, 0, 0, list(first.items)), task_id=first.task_id
    )
    assert ran.get() == {"chunk": 0, "failed": 2}
    with fast.sessions.begin() as session:  # three deliveries started, none ended
        session.execute(
            update(TaskRun)
            .where(TaskRun.id == second.task_id)
            .values(state="running", attempt=3, worker="w9")
        )
    ran = function_step.run_function_chunk.apply(
        args=(job.id, plan.step_id, 1, 2, list(second.items)), task_id=second.task_id
    )
    assert ran.get() == {"chunk": 1, "failed": 2}
    assert service.gather_function_step(fast, plan.step_id) is JobStatus.FAILED
    results = service.job_results(fast, developer, job.id)["results"]
    assert [r["error"]["type"] for r in results] == ["RuntimeError"] * 2 + [TASK_LOST] * 2
    assert "gave up after 3 deliveries" in results[2]["error"]["message"]
    assert "(last on w9)" in results[2]["error"]["message"]
    assert dispatcher.inflight.leases == {}  # both released
