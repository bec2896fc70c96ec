"""The service layer on SQLite with a recording dispatcher; worker reports are
made through the same service functions the Celery tasks call."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SpecError, StateError, Unauthenticated
from jobsys.states import JobStatus
from jobsys.store.models import Job, Step, TaskRun
from tests.support.specs import docker_spec, function_spec, two_docker_steps


def count(ctx: Context, model: type) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_submit_stores_then_publishes(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    assert job.status == "queued" and job.owner == "dev"
    assert [p.step_id for p in dispatcher.published] == [job.steps[0].id]
    tasks = service.job_tasks(ctx, developer, job.id)
    assert [t.id for t in tasks] == [dispatcher.published[0].task_id]


def test_function_step_is_planned_in_chunks(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3, 4, 5], pickled=True))
    plan = dispatcher.published[0]
    assert [(c.start, c.stop) for c in plan.chunks] == [(0, 2), (2, 4), (4, 5)]
    assert job.steps[0].total_tasks == 3 and job.steps[0].total_items == 5
    # the pickled function is stored signed and hidden from readers
    assert job.spec["steps"][0]["function"] == "<pickled callable>"
    with ctx.sessions() as s:
        stored = s.scalar(select(Step.spec))
    assert stored["function"]["$pickle"].startswith("jobsys-signed-v2.function.")


def test_broker_down_keeps_the_job_and_the_sweep_publishes_once(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    dispatcher.down = True
    job = service.submit_job(ctx, developer, docker_spec())
    assert job.status == "queued" and dispatcher.published == []
    assert service.sweep_outbox(ctx) == 0  # still down: nothing lost, nothing sent
    dispatcher.down = False
    assert service.sweep_outbox(ctx) == 1
    assert service.sweep_outbox(ctx) == 0
    assert len(dispatcher.published) == 1


def test_rights_are_checked(ctx: Context, viewer: Principal) -> None:
    with pytest.raises(PermissionDenied, match="'submit' right"):
        service.submit_job(ctx, viewer, docker_spec())
    operator = Principal("op", "operator")
    with pytest.raises(PermissionDenied):
        service.submit_job(ctx, operator, function_spec([1]))
    # a role that may submit, but a pickle needs the code right too
    submitter = Principal("ci", "developer")
    service.submit_job(ctx, submitter, function_spec([1], pickled=True))
    assert count(ctx, Job) == 1


def test_bad_input_stores_nothing(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    with pytest.raises(SpecError):
        service.submit_job(ctx, developer, docker_spec(timeout_s=-5))
    bad_items = function_spec([1])
    for raw in ({"$pickle": 12}, {"$pickle": "not base64!"}):
        bad_items["steps"][0]["items"] = [raw]
        with pytest.raises(SpecError):
            service.submit_job(ctx, developer, bad_items)
    assert count(ctx, Job) == 0 and count(ctx, Step) == 0 and dispatcher.published == []


def run_step(ctx: Context, plan_tasks: list[str], *, ok: bool = True) -> None:
    for task_id in plan_tasks:
        assert service.start_task(ctx, task_id, "w1") is not None
        assert service.finish_task(ctx, task_id, ok=ok)


def test_steps_run_in_order_and_the_job_completes(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    spec = two_docker_steps()
    job = service.submit_job(ctx, developer, spec)
    assert len(dispatcher.published) == 1  # only the first step until it ends
    first = dispatcher.published[0]
    run_step(ctx, [first.task_id])
    assert service.get_job(ctx, developer, job.id).status == "running"
    service.complete_step(ctx, first.step_id, JobStatus.COMPLETED, exit_code=0)
    assert len(dispatcher.published) == 2
    second = dispatcher.published[1]
    run_step(ctx, [second.task_id])
    service.complete_step(ctx, second.step_id, JobStatus.COMPLETED, exit_code=0)
    done = service.get_job(ctx, developer, job.id)
    assert done.status == "completed" and done.finished_at is not None
    assert (done.done_tasks, done.total_tasks) == (2, 2)


def test_a_failed_step_fails_the_job_and_later_steps_never_start(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    spec = two_docker_steps()
    job = service.submit_job(ctx, developer, spec)
    first = dispatcher.published[0]
    run_step(ctx, [first.task_id], ok=False)
    service.complete_step(ctx, first.step_id, JobStatus.FAILED, error="exit 3", exit_code=3)
    failed = service.get_job(ctx, developer, job.id)
    assert failed.status == "failed" and "exit 3" in (failed.error or "")
    assert failed.steps[1].status == "queued" and len(dispatcher.published) == 1
    assert service.sweep_outbox(ctx) == 0  # the sweep does not revive it either


def test_duplicate_reports_count_once(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    task_id = dispatcher.published[0].task_id
    run_step(ctx, [task_id])
    assert service.finish_task(ctx, task_id, ok=True) is False
    assert service.start_task(ctx, task_id, "w2") is None  # a redelivery of a finished task
    assert service.get_job(ctx, developer, job.id).steps[0].done_tasks == 1


def test_gather_judges_items_and_orders_results(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3], chunk_size=2))
    plan = dispatcher.published[0]
    with pytest.raises(StateError):
        service.job_results(ctx, developer, job.id)
    boom = {"ok": False, "error": {"type": "ValueError", "message": "no", "traceback": ""}}
    outcomes = {0: [{"ok": True, "value": 1}, boom], 1: [{"ok": True, "value": 3}]}
    for chunk in reversed(plan.chunks):  # finish out of order on purpose
        service.start_task(ctx, chunk.task_id, "w")
        failed = sum(not o["ok"] for o in outcomes[chunk.index])
        service.finish_task(
            ctx, chunk.task_id, ok=True, results=outcomes[chunk.index], failed_items=failed
        )
    assert service.gather_function_step(ctx, plan.step_id) is JobStatus.FAILED
    info = service.get_job(ctx, developer, job.id)
    assert info.status == "failed"
    assert "1 of 3 items failed (first: item 1: ValueError: no)" in (info.error or "")
    results = service.job_results(ctx, developer, job.id)
    assert [r.get("value") for r in results["results"]] == [1, None, 3]
    assert results["failed"] == 1


def test_tolerated_failures_complete_the_job(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    spec = function_spec([1], chunk_size=1)
    spec["steps"][0]["tolerate_failures"] = True
    job = service.submit_job(ctx, developer, spec)
    chunk = dispatcher.published[0].chunks[0]
    service.start_task(ctx, chunk.task_id, "w")
    boom = {"ok": False, "error": {"type": "E", "message": "m", "traceback": ""}}
    service.finish_task(ctx, chunk.task_id, ok=True, results=[boom], failed_items=1)
    assert service.gather_function_step(ctx, dispatcher.published[0].step_id) is (
        JobStatus.COMPLETED
    )
    assert service.get_job(ctx, developer, job.id).steps[0].failed_items == 1


def test_cancelled_or_finished_jobs_do_not_start_tasks(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    service.finish_job(ctx, job.id, JobStatus.CANCELLED)
    assert service.start_task(ctx, dispatcher.published[0].task_id, "w") is None
    with ctx.sessions() as s:
        assert s.scalar(select(TaskRun.state)) == "pending"  # dropped untouched


def test_list_filters_and_pages(ctx: Context, developer: Principal) -> None:
    ids = [service.submit_job(ctx, developer, docker_spec()).id for _ in range(5)]
    service.finish_job(ctx, ids[0], JobStatus.FAILED, error="x")
    page = service.list_jobs(ctx, developer, per_page=2)
    assert page.total == 5 and len(page.items) == 2
    assert page.items[0].id == ids[-1]  # newest first
    assert [j.id for j in service.list_jobs(ctx, developer, status="failed").items] == [ids[0]]
    with pytest.raises(SpecError):
        service.list_jobs(ctx, developer, status="exploded")
    with pytest.raises(SpecError):
        service.list_jobs(ctx, developer, per_page=10_000)
    with pytest.raises(NotFoundError):
        service.get_job(ctx, developer, "nope")


def test_logs_tail(ctx: Context, developer: Principal) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    lines = [service.LogRecord(line=f"line {i}") for i in range(10)]
    service.append_logs(ctx, job.id, job.steps[0].id, lines)
    assert [e.line for e in service.job_logs(ctx, developer, job.id, tail=3)] == [
        "line 7",
        "line 8",
        "line 9",
    ]
    assert len(service.job_logs(ctx, developer, job.id)) == 10


def test_tokens_are_hashed_and_authenticate(ctx: Context) -> None:
    issued = service.create_token(ctx, SYSTEM, name="ci", role="developer")
    assert service.authenticate(ctx, issued.token) == Principal(
        "ci", projects=(("default", "developer"),)
    )
    with pytest.raises(Unauthenticated):
        service.authenticate(ctx, issued.token + "x")
    with pytest.raises(Unauthenticated):
        service.authenticate(ctx, None)
    with pytest.raises(PermissionDenied):
        service.create_token(ctx, Principal("ci", "developer"), name="x", role="admin")
    with pytest.raises(SpecError):
        service.create_token(ctx, SYSTEM, name="x", role="root")


def test_bootstrap_token_only_on_an_empty_database(ctx: Context, tmp_path) -> None:
    path = tmp_path / "admin.token"
    issued = service.bootstrap_token(ctx, path)
    assert issued is not None and path.read_text().strip() == issued.token
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert service.bootstrap_token(ctx, tmp_path / "again") is None


def test_a_sole_chunk_ends_its_step_and_job_in_its_own_report(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    """A one-chunk step has no chord callback: ``finish_task(settle=True)`` judges
    the step and ends the job."""
    job = service.submit_job(ctx, developer, function_spec([-3], chunk_size=5))
    (chunk,) = dispatcher.published[0].chunks
    service.start_task(ctx, chunk.task_id, "w")
    assert service.finish_task(
        ctx, chunk.task_id, ok=True, results=[{"ok": True, "value": 3}], settle=True
    )
    info = service.get_job(ctx, developer, job.id)
    assert info.status == "completed" and info.steps[0].status == "completed"
    assert info.steps[0].done_tasks == 1
    # a second report changes nothing and ends nothing twice
    assert service.finish_task(ctx, chunk.task_id, ok=True, settle=True) is False


def test_a_sole_chunk_with_a_failed_item_fails_the_job(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, function_spec([1], chunk_size=5))
    (chunk,) = dispatcher.published[0].chunks
    service.start_task(ctx, chunk.task_id, "w")
    boom = {"ok": False, "error": {"type": "ValueError", "message": "no", "traceback": ""}}
    service.finish_task(ctx, chunk.task_id, ok=True, results=[boom], failed_items=1, settle=True)
    info = service.get_job(ctx, developer, job.id)
    assert info.status == "failed"
    assert "1 of 1 items failed (first: item 0: ValueError: no)" in (info.error or "")


def test_a_sole_chunk_publishes_the_next_step(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    spec = function_spec([1], chunk_size=5)
    spec["steps"].append(docker_spec()["steps"][0])
    job = service.submit_job(ctx, developer, spec)
    (chunk,) = dispatcher.published[0].chunks
    service.start_task(ctx, chunk.task_id, "w")
    service.finish_task(
        ctx, chunk.task_id, ok=True, results=[{"ok": True, "value": 1}], settle=True
    )
    info = service.get_job(ctx, developer, job.id)
    assert info.status == "running" and info.steps[0].status == "completed"
    assert [p.step_id for p in dispatcher.published] == [s.id for s in info.steps]
