"""The rules of cancelling a job, one behaviour each: what moves to cancelled
and what keeps the state it ended in, what the broker is told, the reasons and
audit entries a user reads, bulk cancel, Flower's revokes, and the checks
workers and the reaper make."""

from __future__ import annotations

import logging

import pytest

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SpecError, StateError
from jobsys.service import control
from jobsys.service.control import Cancelled
from jobsys.states import JobStatus
from tests.support.specs import docker_spec, function_spec

ADMIN = Principal("ada", "admin")
OPERATOR = Principal("op", "operator")


def two_step_job(ctx: Context, dispatcher: MemoryDispatcher, owner: Principal) -> str:
    """A Docker job whose first step completed and whose second is running."""
    spec = docker_spec()
    spec["steps"].append(dict(spec["steps"][0]))  # type: ignore[union-attr]
    job = service.submit_job(ctx, owner, spec)
    first = dispatcher.published[0]
    assert service.start_task(ctx, first.task_id, "w") is not None
    assert service.finish_task(ctx, first.task_id, ok=True)
    service.complete_step(ctx, first.step_id, JobStatus.COMPLETED, exit_code=0)
    second = dispatcher.published[1].task_id
    assert service.start_task(ctx, second, "w") is not None
    return job.id


def test_cancel_leaves_a_finished_step_and_its_task_as_they_ended(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job_id = two_step_job(ctx, dispatcher, developer)
    before = service.get_job(ctx, developer, job_id)
    assert before.status == "running"
    done = service.cancel_job(ctx, developer, job_id)
    assert done.status == "cancelled" and done.finished_at is not None
    assert [s.status for s in done.steps] == ["completed", "cancelled"]
    assert done.steps[0].finished_at == before.steps[0].finished_at
    assert done.steps[1].finished_at is not None
    tasks = service.job_tasks(ctx, developer, job_id)
    assert [t.state for t in tasks] == ["completed", "cancelled"]
    # The running Docker task is marked, but left unfinished for its own last report.
    assert tasks[1].finished_at is None
    # A Docker task is stopped through the job's flag, never revoked as a chunk.
    assert job_id in dispatcher.cancelled and dispatcher.revoked == []


def test_pending_chunks_are_finished_at_cancel_running_ones_are_not(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3], chunk_size=1))
    chunks = dispatcher.published[0].chunks
    service.start_task(ctx, chunks[0].task_id, "w")
    service.cancel_job(ctx, developer, job.id)
    tasks = service.job_tasks(ctx, developer, job.id)
    assert [t.state for t in tasks] == ["cancelled", "cancelled", "cancelled"]
    assert [t.finished_at is None for t in tasks] == [True, False, False]
    assert sorted(dispatcher.revoked) == sorted(c.task_id for c in chunks)


def test_a_reason_becomes_the_jobs_error_and_is_audited(ctx: Context, developer: Principal) -> None:
    with_reason = service.submit_job(ctx, developer, docker_spec()).id
    plain = service.submit_job(ctx, developer, docker_spec()).id
    done = service.cancel_job(ctx, OPERATOR, with_reason, reason="wrong input file")
    assert done.error == "wrong input file"
    assert service.cancel_job(ctx, OPERATOR, plain).error == "cancelled by op"
    entries, _ = service.list_audit(ctx, ADMIN, action="job.cancel")
    by_job = {e.target: e for e in entries}
    assert {e.action for e in entries} == {"job.cancel"}
    assert by_job[with_reason].detail == {"reason": "wrong input file"}
    assert by_job[with_reason].actor == "op"
    assert by_job[plain].detail is None


def test_cancelling_an_ended_job_says_why_and_what_to_do(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    service.cancel_job(ctx, developer, job.id)
    with pytest.raises(StateError) as info:
        service.cancel_job(ctx, developer, job.id)
    assert info.value.message == (
        f"job {job.id} is cancelled; only queued or running jobs can be cancelled "
        "(rerun it instead)"
    )
    assert service.get_job(ctx, developer, job.id).error == "cancelled by dev"


def test_bulk_cancel_skips_ended_and_unknown_jobs_with_their_reasons(
    ctx: Context, developer: Principal
) -> None:
    a = service.submit_job(ctx, developer, docker_spec()).id
    b = service.submit_job(ctx, developer, docker_spec()).id
    ended = service.submit_job(ctx, developer, docker_spec()).id
    service.cancel_job(ctx, developer, ended)
    result = service.cancel_jobs(ctx, developer, [a, a, ended, "nope", b])
    assert result.cancelled == (a, b)  # once each, in the order given
    assert set(result.skipped) == {ended, "nope"}
    assert "only queued or running" in result.skipped[ended]
    assert result.skipped["nope"] == "no job with id 'nope'"
    assert result.summary == (
        f"cancelled 2 job(s); 2 skipped ({result.skipped[ended]}; no job with id 'nope')"
    )
    assert service.get_job(ctx, developer, b).status == "cancelled"


def test_bulk_cancel_summary_without_skips() -> None:
    assert Cancelled(("a",), {}).summary == "cancelled 1 job(s)"


def test_bulk_cancel_needs_one_to_500_jobs(
    ctx: Context, developer: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[str] = []

    def missing(_ctx: Context, _who: Principal, job_id: str) -> None:
        tried.append(job_id)
        raise NotFoundError(f"no job with id {job_id!r}")

    # Each job's own cancel is covered above; here only the limits, kept fast.
    monkeypatch.setattr(control, "cancel_job", missing)
    with pytest.raises(SpecError) as info:
        service.cancel_jobs(ctx, developer, [])
    assert info.value.fields == {"job_id": "select at least one job"}
    with pytest.raises(SpecError) as info:
        service.cancel_jobs(ctx, developer, [f"j{i}" for i in range(501)])
    assert info.value.fields == {"job_id": "cancel at most 500 jobs at once"}
    most = service.cancel_jobs(ctx, developer, [f"j{i}" for i in range(500)])
    assert most.cancelled == () and len(most.skipped) == 500 and len(tried) == 500


def test_bulk_cancel_needs_the_cancel_right(ctx: Context, viewer: Principal) -> None:
    with pytest.raises(PermissionDenied) as info:
        service.cancel_jobs(ctx, viewer, [])
    assert info.value.right == "cancel"


def test_cancel_by_task_names_the_caller_the_task_and_what_was_done(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    first = service.submit_job(ctx, developer, docker_spec()).id
    task = dispatcher.published[0].task_id
    info = service.cancel_job_of_task(ctx, OPERATOR, task, how="revoked through Flower")
    assert info is not None and info.id == first and info.status == "cancelled"
    assert info.error == f"cancelled by op: task {task} revoked through Flower"
    second = service.submit_job(ctx, developer, docker_spec()).id
    task = dispatcher.published[1].task_id
    info = service.cancel_job_of_task(ctx, OPERATOR, task)
    assert info is not None and info.id == second
    assert info.error == f"cancelled by op: task {task} revoked"


def test_a_task_outside_jobsys_is_only_an_admins_to_act_on(
    ctx: Context, developer: Principal, viewer: Principal
) -> None:
    assert service.cancel_job_of_task(ctx, ADMIN, "celery-housekeeping") is None
    with pytest.raises(PermissionDenied) as info:
        service.cancel_job_of_task(ctx, developer, "celery-housekeeping")
    assert info.value.right == "admin"
    assert "'celery-housekeeping' belongs to no jobsys job" in info.value.message
    with pytest.raises(PermissionDenied) as info:
        service.cancel_job_of_task(ctx, viewer, "celery-housekeeping")
    assert info.value.right == "cancel"


def test_a_task_revoked_in_celery_cancels_its_job_once(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    killed = service.submit_job(ctx, developer, docker_spec()).id
    task = dispatcher.published[0].task_id
    assert service.cancel_for_revoked_task(ctx, task, terminated=True) == killed
    job = service.get_job(ctx, developer, killed)
    assert job.status == "cancelled"
    assert job.error == f"cancelled: task {task} was terminated in Celery"
    # Its job already over (as after our own cancel's revokes): nothing to do.
    assert service.cancel_for_revoked_task(ctx, task, terminated=True) is None
    assert service.cancel_for_revoked_task(ctx, "not-ours", terminated=False) is None

    revoked = service.submit_job(ctx, developer, docker_spec()).id
    task = dispatcher.published[1].task_id
    assert service.cancel_for_revoked_task(ctx, task, terminated=False) == revoked
    job = service.get_job(ctx, developer, revoked)
    assert job.error == f"cancelled: task {task} was revoked in Celery"
    entries, _ = service.list_audit(ctx, ADMIN, action="job.cancel")
    assert {e.actor for e in entries} == {SYSTEM.name}


def test_workers_see_the_broker_flag_and_fall_back_to_the_database(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec()).id
    assert not service.is_cancelled(ctx, job)
    dispatcher.cancelled.add(job)  # the flag alone, before the database is read
    assert service.is_cancelled(ctx, job)
    dispatcher.cancelled.clear()
    dispatcher.down = True
    assert not service.is_cancelled(ctx, job)
    service.cancel_job(ctx, developer, job)
    assert service.is_cancelled(ctx, job)  # from the database: the broker is down
    assert not service.is_cancelled(ctx, "unknown")


def test_the_reaper_learns_which_known_jobs_ended(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    assert service.ended_job_ids(ctx, []) == set()
    queued = service.submit_job(ctx, developer, docker_spec()).id
    running = service.submit_job(ctx, developer, docker_spec()).id
    service.start_task(ctx, dispatcher.published[1].task_id, "w")
    completed = service.submit_job(ctx, developer, docker_spec()).id
    service.start_task(ctx, dispatcher.published[2].task_id, "w")
    service.finish_job(ctx, completed, JobStatus.COMPLETED)
    failed = service.submit_job(ctx, developer, docker_spec()).id
    service.start_task(ctx, dispatcher.published[3].task_id, "w")
    service.finish_job(ctx, failed, JobStatus.FAILED, error="boom")
    cancelled = service.submit_job(ctx, developer, docker_spec()).id
    service.cancel_job(ctx, developer, cancelled)
    statuses = {
        j: service.get_job(ctx, developer, j).status
        for j in (queued, running, completed, failed, cancelled)
    }
    assert statuses == {
        queued: JobStatus.QUEUED.value,
        running: JobStatus.RUNNING.value,
        completed: JobStatus.COMPLETED.value,
        failed: JobStatus.FAILED.value,
        cancelled: JobStatus.CANCELLED.value,
    }
    asked = [queued, running, completed, failed, cancelled, "another-jobsys"]
    assert service.ended_job_ids(ctx, asked) == {completed, failed, cancelled}


def test_the_refusal_for_a_foreign_task_says_what_to_do_instead(
    ctx: Context, developer: Principal
) -> None:
    with pytest.raises(PermissionDenied) as info:
        service.cancel_job_of_task(ctx, developer, "t-1")
    assert info.value.message == (
        "task 't-1' belongs to no jobsys job; revoking a task outside jobsys needs the "
        "'admin' right (cancel a jobsys job by its own tasks, or with its Cancel button)"
    )


def test_the_reaper_hears_only_about_the_jobs_it_asked_about(
    ctx: Context, developer: Principal
) -> None:
    asked = service.submit_job(ctx, developer, docker_spec()).id
    other = service.submit_job(ctx, developer, docker_spec()).id
    for job_id in (asked, other):
        service.cancel_job(ctx, developer, job_id)
    assert service.ended_job_ids(ctx, [asked, "another-jobsys"]) == {asked}


def test_cancelling_one_job_leaves_the_others_alone(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    mine = service.submit_job(ctx, developer, function_spec([1, 2], chunk_size=1)).id
    theirs = service.submit_job(ctx, developer, function_spec([3, 4], chunk_size=1)).id
    their_chunks = [c.task_id for c in dispatcher.published[1].chunks]
    service.start_task(ctx, their_chunks[0], "w")
    service.cancel_job(ctx, developer, mine)
    other = service.get_job(ctx, developer, theirs)
    assert other.status == "running" and [s.status for s in other.steps] == ["running"]
    states = [t.state for t in service.job_tasks(ctx, developer, theirs)]
    assert states == ["running", "pending"]
    assert not set(their_chunks) & set(dispatcher.revoked)
    assert sorted(dispatcher.revoked) == sorted(c.task_id for c in dispatcher.published[0].chunks)


def test_a_cancel_the_broker_missed_is_logged_for_the_operator(
    ctx: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = service.submit_job(ctx, developer, docker_spec()).id
    dispatcher.down = True
    with caplog.at_level(logging.WARNING, logger="jobsys.service.control"):
        assert service.cancel_job(ctx, developer, job).status == "cancelled"
    assert [r.getMessage() for r in caplog.records if r.name == "jobsys.service.control"] == [
        f"cancel of {job} not mirrored to the broker: the broker is unreachable: simulated outage"
    ]
