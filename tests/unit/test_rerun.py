"""Rerun and resume through the service layer (SQLite, recording dispatcher)."""

from __future__ import annotations

from typing import Any

import pytest

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import PermissionDenied, StateError
from tests.support.events import play_docker_step
from tests.support.specs import docker_spec, function_spec, two_docker_steps


def ok(v: Any) -> dict[str, Any]:
    return {"ok": True, "value": v}


BOOM = {"ok": False, "error": {"type": "ValueError", "message": "no", "traceback": ""}}


def run_chunks(ctx: Context, plan: Any, outcome: Any) -> None:
    """Run each chunk of a plan; ``outcome(item_index)`` gives each item's envelope."""
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        results = [outcome(i) for i in range(chunk.start, chunk.stop)]
        service.finish_task(
            ctx,
            chunk.task_id,
            ok=True,
            results=results,
            failed_items=sum(not r["ok"] for r in results),
        )
    service.gather_function_step(ctx, plan.step_id)


def test_rerun_copies_the_spec_and_links_back(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    old = service.submit_job(ctx, developer, docker_spec())
    new = service.rerun_job(ctx, Principal("op", "operator"), old.id)
    assert new.id != old.id and new.rerun_of == old.id and new.owner == "op"
    assert new.spec == old.spec and new.status == "queued"
    assert [p.job_id for p in dispatcher.published] == [old.id, new.id]
    assert service.get_job(ctx, developer, old.id).status == "queued"  # untouched
    with pytest.raises(PermissionDenied):
        service.rerun_job(ctx, Principal("v", "viewer"), old.id)


def test_resume_runs_only_failed_items_and_keeps_item_order(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    old = service.submit_job(ctx, developer, function_spec(list(range(10)), chunk_size=4))
    run_chunks(ctx, dispatcher.published[0], lambda i: BOOM if i in (2, 3, 7) else ok(i))
    assert service.get_job(ctx, developer, old.id).status == "failed"

    new = service.resume_job(ctx, developer, old.id)
    assert new.rerun_of == old.id
    plan = dispatcher.published[-1]
    assert [(c.start, c.stop) for c in plan.chunks] == [(2, 4), (7, 8)]
    step = new.steps[0]
    assert (step.done_tasks, step.total_tasks) == (3, 5)  # carried: 0-2, 4-7, 8-10
    run_chunks(ctx, plan, lambda i: ok(i * 100))
    done = service.get_job(ctx, developer, new.id)
    assert done.status == "completed"
    values = [r["value"] for r in service.job_results(ctx, developer, new.id)["results"]]
    assert values == [0, 1, 200, 300, 4, 5, 6, 700, 8, 9]
    with pytest.raises(StateError, match="only failed or cancelled"):
        service.resume_job(ctx, developer, new.id)


def test_resume_skips_completed_steps(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    spec = two_docker_steps()
    old = service.submit_job(ctx, developer, spec)
    play_docker_step(ctx, dispatcher.published[0])
    play_docker_step(ctx, dispatcher.published[1], exit_code=1)

    new = service.resume_job(ctx, developer, old.id)
    assert [s.status for s in new.steps] == ["completed", "queued"]
    assert dispatcher.published[-1].step_id == new.steps[1].id
    assert len(service.job_tasks(ctx, developer, new.id)) == 2  # carried + new


def test_resume_of_a_cancelled_queued_job_starts_over(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    old = service.submit_job(ctx, developer, function_spec([1, 2, 3], chunk_size=2))
    service.cancel_job(ctx, developer, old.id)
    service.resume_job(ctx, developer, old.id)
    assert [(c.start, c.stop) for c in dispatcher.published[-1].chunks] == [(0, 2), (2, 3)]
