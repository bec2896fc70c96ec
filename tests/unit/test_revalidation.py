"""A job made from a stored spec (rerun, resume, run-now, a schedule or template
firing) is checked as a submission would be today: against today's settings,
with the rights of whoever creates it. A refusal names the field and creates
nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from sqlalchemy import func, select

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import PermissionDenied, SpecError
from jobsys.signing import b64encode
from jobsys.store.models import Job, ScheduleRun
from tests.support.specs import docker_spec

ADMIN = Principal("ada", "admin")
OPERATOR = Principal("otto", "operator")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def count(ctx: Context, model: type) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def with_settings(ctx: Context, **changes: Any) -> Context:
    """The same database and broker after the operator changed the settings."""
    return replace(ctx, settings=replace(ctx.settings, **changes))


def code_spec(items: list[Any] | None = None) -> dict[str, Any]:
    fn = {"$pickle": b64encode(cloudpickle.dumps(abs))}
    return {"name": "code", "steps": [{"kind": "function", "function": fn, "items": items or [-1]}]}


NARROWED = {
    # The allow-list no longer has the image the job used.
    "image": ({}, {"docker_images": ("registry.example/*",)}, "steps[0].image"),
    # Network access was allowed when the job was submitted, and is no longer.
    "network": (
        {"network": "bridge"},
        {"docker_allow_network": False},
        "steps[0].network",
    ),
}


def stored_job(ctx: Context, developer: Principal, extra: dict[str, Any]) -> Any:
    loose = with_settings(ctx, docker_allow_network=True)
    return service.submit_job(loose, developer, docker_spec(**extra))


@pytest.mark.parametrize("what", sorted(NARROWED))
@pytest.mark.parametrize("path", ["rerun", "resume"])
def test_rerun_and_resume_check_todays_settings(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal, path: str, what: str
) -> None:
    extra, narrowed, field = NARROWED[what]
    old = stored_job(ctx, developer, extra)
    service.cancel_job(ctx, developer, old.id)  # so that it can be resumed
    today = with_settings(ctx, **narrowed)
    sent = len(dispatcher.published)
    act = service.rerun_job if path == "rerun" else service.resume_job
    with pytest.raises(SpecError) as caught:
        act(today, developer, old.id)
    assert field in caught.value.fields, caught.value.fields
    assert count(ctx, Job) == 1 and len(dispatcher.published) == sent
    # Under the settings it was submitted with, the same call goes through.
    assert act(with_settings(ctx, docker_allow_network=True), developer, old.id).rerun_of == old.id


def test_run_now_and_a_firing_check_todays_settings(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    body = {"name": "hourly", "interval_s": 3600, "spec": docker_spec()}
    service.create_schedule(ctx, ADMIN, body, now=T0)
    today = with_settings(ctx, docker_images=("registry.example/*",))
    with pytest.raises(SpecError) as caught:
        service.run_schedule_now(today, ADMIN, "hourly")
    assert "steps[0].image" in caught.value.fields
    assert count(ctx, Job) == count(ctx, ScheduleRun) == 0
    (fired,) = service.fire_due_schedules(today, T0 + timedelta(hours=1))
    assert fired.outcome == "failed" and fired.job_id is None
    (run,) = service.schedule_runs(ctx, ADMIN, "hourly")
    assert "steps[0].image" in (run.note or "")
    assert count(ctx, Job) == 0 and dispatcher.published == []


def test_a_template_firing_checks_todays_settings(ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    (folder / "hello").mkdir(parents=True)
    (folder / "hello" / "job.yaml").write_text(
        "steps: [{kind: docker, image: jobsys/busybox:local, command: [echo, hi]}]\n"
    )
    service.reload_catalog(ctx, ADMIN, folder)
    body = {"name": "hello-hourly", "interval_s": 3600, "template": "hello"}
    service.create_schedule(ctx, ADMIN, body, now=T0)
    today = with_settings(ctx, docker_images=("registry.example/*",))
    (fired,) = service.fire_due_schedules(today, T0 + timedelta(hours=1))
    assert fired.outcome == "failed"
    (run,) = service.schedule_runs(ctx, ADMIN, "hello-hourly")
    assert "steps[0].image" in (run.note or "")
    with pytest.raises(SpecError):
        service.start_template(today, OPERATOR, "hello", {})
    started = service.start_template(ctx, OPERATOR, "hello", {})
    assert started.code_owner == "otto"  # a template start's code is the starter's to trust


@pytest.mark.parametrize("path", ["rerun", "resume"])
def test_rerunning_pickled_code_needs_submit_code_of_the_rerunner(
    ctx: Context, developer: Principal, path: str
) -> None:
    """ "The rights of the principal who creates the new job": an operator may rerun,
    but only a developer runs code, and a rerun of pickled code runs code again."""
    old = service.submit_job(ctx, developer, code_spec())
    service.cancel_job(ctx, developer, old.id)
    act = service.rerun_job if path == "rerun" else service.resume_job
    with pytest.raises(PermissionDenied) as caught:
        act(ctx, OPERATOR, old.id)
    assert caught.value.right == "submit_code"
    assert count(ctx, Job) == 1
    other = Principal("devi", "developer")
    again = act(ctx, other, old.id)
    assert again.owner == "devi" and again.code_owner == "dev"  # the code is still dev's


def test_an_operator_still_reruns_what_holds_no_code(ctx: Context, developer: Principal) -> None:
    docker = service.submit_job(ctx, developer, docker_spec())
    by_path = service.submit_job(
        ctx,
        developer,
        {"name": "m", "steps": [{"kind": "function", "function": "builtins:abs", "items": [-1]}]},
    )
    assert service.rerun_job(ctx, OPERATOR, docker.id).owner == "otto"
    again = service.rerun_job(ctx, OPERATOR, by_path.id)
    assert again.code_owner == "dev" and again.spec == by_path.spec


def test_run_now_of_pickled_code_needs_submit_code_of_the_caller(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    body = {"name": "coded", "interval_s": 3600, "spec": code_spec()}
    service.create_schedule(ctx, ADMIN, body, now=T0)
    with pytest.raises(PermissionDenied) as caught:
        service.run_schedule_now(ctx, OPERATOR, "coded")
    assert caught.value.right == "submit_code"
    assert count(ctx, Job) == count(ctx, ScheduleRun) == 0
    job = service.run_schedule_now(ctx, Principal("devi", "developer"), "coded")
    assert job.owner == "devi" and job.code_owner == "ada"  # the schedule's owner supplied it


def test_run_now_of_a_template_schedule_meets_the_templates_roles(
    ctx: Context, tmp_path: Path
) -> None:
    """An operator the template refuses to start or restart its jobs cannot
    have one started by "run now" of an admin's schedule of it."""
    folder = tmp_path / "catalog"
    (folder / "guarded").mkdir(parents=True)
    (folder / "guarded" / "job.yaml").write_text(
        "roles: {start: [admin], restart: [admin]}\n"
        "steps: [{kind: docker, image: jobsys/busybox:local, command: [echo, hi]}]\n"
    )
    service.reload_catalog(ctx, ADMIN, folder)
    body = {"name": "guarded-hourly", "interval_s": 3600, "template": "guarded"}
    service.create_schedule(ctx, ADMIN, body, now=T0)
    with pytest.raises(PermissionDenied, match="template 'guarded' lets only the roles admin"):
        service.run_schedule_now(ctx, OPERATOR, "guarded-hourly")
    assert count(ctx, Job) == count(ctx, ScheduleRun) == 0
    job = service.run_schedule_now(ctx, ADMIN, "guarded-hourly")
    assert job.template == "guarded"


def test_a_schedules_code_stays_its_suppliers_through_edits_of_anything_else(
    ctx: Context,
) -> None:
    """Clients unpickle results for the job's code owner: an admin who only
    pauses someone's schedule must not become the owner of their code."""
    service.create_schedule(
        ctx, ADMIN, {"name": "coded", "interval_s": 3600, "spec": code_spec()}, now=T0
    )
    root = Principal("root", "admin")
    service.update_schedule(ctx, root, "coded", {"enabled": False}, now=T0)
    service.update_schedule(ctx, root, "coded", {"enabled": True}, now=T0)
    job = service.run_schedule_now(ctx, root, "coded")
    assert (job.owner, job.code_owner) == ("root", "ada")
    service.update_schedule(ctx, root, "coded", {"spec": code_spec([7])}, now=T0)
    assert service.run_schedule_now(ctx, root, "coded").code_owner == "root"
