"""A submit stores the job, its audit entry and its first step's claim in one
commit, publishes after it, and answers with the job as stored (no read-back)."""

from __future__ import annotations

from sqlalchemy import select

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.store.models import AuditEntry, Step, TaskRun
from tests.support.specs import docker_spec, function_spec


def stored(ctx: Context, job_id: str) -> tuple[list[str], Step, list[TaskRun]]:
    with ctx.sessions() as s:
        audit = list(s.scalars(select(AuditEntry.action).where(AuditEntry.target == job_id)))
        step = s.scalars(select(Step).where(Step.job_id == job_id)).one()
        runs = list(s.scalars(select(TaskRun).where(TaskRun.job_id == job_id)))
        return audit, step, runs


def test_the_answer_is_the_job_as_stored(ctx: Context, developer: Principal) -> None:
    spec = {**function_spec([1, 2, 3]), "tags": ["nightly", "team=data"]}
    job = service.submit_job(ctx, developer, spec)
    assert job == service.get_job(ctx, developer, job.id)
    docker = service.submit_job(ctx, developer, docker_spec())
    assert docker == service.get_job(ctx, developer, docker.id)


def test_job_audit_entry_and_claim_are_stored_before_publishing(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    seen: list[tuple[list[str], Step, list[TaskRun]]] = []
    publish = dispatcher.publish

    def publish_and_look(plan: object) -> None:
        seen.append(stored(ctx, plan.job_id))  # type: ignore[attr-defined]
        publish(plan)  # type: ignore[arg-type]

    dispatcher.publish = publish_and_look  # type: ignore[method-assign]
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3]))
    audit, step, runs = seen[0]
    assert audit == ["job.submit"]
    assert step.dispatched_at is not None
    assert sorted(r.id for r in runs) == sorted(c.task_id for c in dispatcher.published[0].chunks)
    assert stored(ctx, job.id)[1].dispatched_at is not None


def test_a_failed_publish_leaves_the_step_to_the_outbox(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    dispatcher.down = True
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3]))
    audit, step, runs = stored(ctx, job.id)
    assert audit == ["job.submit"] and step.dispatched_at is None and runs
    dispatcher.down = False
    assert service.sweep_outbox(ctx) == 1
    # the sweep's plan replaced the pending rows of the failed one
    _audit, step, runs = stored(ctx, job.id)
    assert step.dispatched_at is not None
    assert sorted(r.id for r in runs) == sorted(c.task_id for c in dispatcher.published[0].chunks)


def test_an_idempotent_repeat_stores_audits_and_sends_nothing(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    spec = docker_spec()
    once = service.Idempotency.of("key-1", "POST /api/jobs", spec)
    first = service.submit_job(ctx, developer, spec, once=once)
    again = service.submit_job(ctx, developer, spec, once=once)
    assert again.replayed and again.id == first.id
    assert stored(ctx, first.id)[0] == ["job.submit"]
    assert len(dispatcher.published) == 1
