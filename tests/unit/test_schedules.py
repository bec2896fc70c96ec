"""Schedules through the service layer on SQLite: CRUD, firing by policy with
"now" passed in (no sleeping), overlap, run-now, and the once-per-tick record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cloudpickle
import pytest
from sqlalchemy import event, func, select, update

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SpecError
from jobsys.signing import b64encode
from jobsys.states import JobStatus
from jobsys.store.models import Job, Schedule, ScheduleRun, Step
from tests.support.specs import docker_spec

ADMIN = Principal(name="ada", role="admin")
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def every(seconds: int, **extra: object) -> dict[str, object]:
    return {"name": f"every-{seconds}", "interval_s": seconds, "spec": docker_spec(), **extra}


def count(ctx: Context, model: type) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def runs(ctx: Context, ref: str) -> list[service.ScheduleRunInfo]:
    return list(reversed(service.schedule_runs(ctx, ADMIN, ref)))


def test_create_sets_the_next_tick_and_reads_back_by_id_or_name(ctx: Context) -> None:
    created = service.create_schedule(ctx, ADMIN, every(60), now=T0 + timedelta(seconds=5))
    assert created.next_fire_at == T0 + timedelta(seconds=60)
    assert created.owner == "ada" and created.enabled and created.catch_up == "skip"
    assert service.get_schedule(ctx, ADMIN, "every-60").id == created.id
    assert [s.name for s in service.list_schedules(ctx, ADMIN)] == ["every-60"]
    assert created.to_dict()["timing"] == "every 60 s"


def test_cron_in_a_time_zone(ctx: Context) -> None:
    data = {"name": "nine", "cron": "0 9 * * *", "timezone": "Europe/Berlin", "spec": docker_spec()}
    created = service.create_schedule(ctx, ADMIN, data, now=T0)
    assert created.next_fire_at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 CET


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "@fortnightly"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"interval_s": 0}, "interval_s"),
        ({"cron": "* * * * *", "interval_s": 5}, "cron"),
        ({"catch_up": "sometimes"}, "catch_up"),
        ({"overlap": "maybe"}, "overlap"),
        ({"catch_up_window_s": -1}, "catch_up_window_s"),
        ({"spec": {"name": "x", "steps": [{"kind": "docker", "image": "evil/x"}]}}, "spec"),
        ({"colour": "red"}, "body"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    ctx: Context, change: dict[str, object], field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        service.create_schedule(ctx, ADMIN, {**every(60), **change})
    assert any(name == field or name.startswith(field + ".") for name in caught.value.fields)
    assert count(ctx, Schedule) == 0


def test_names_are_unique(ctx: Context) -> None:
    service.create_schedule(ctx, ADMIN, every(60))
    with pytest.raises(SpecError) as caught:
        service.create_schedule(ctx, ADMIN, every(60))
    assert "exists" in caught.value.fields["name"]


def test_rights(ctx: Context) -> None:
    for role in ("viewer", "operator", "developer"):
        with pytest.raises(PermissionDenied):
            service.create_schedule(ctx, Principal("x", role), every(60))
    created = service.create_schedule(ctx, ADMIN, every(60))
    with pytest.raises(PermissionDenied):
        service.run_schedule_now(ctx, Principal("v", "viewer"), created.id)
    job = service.run_schedule_now(ctx, Principal("op", "operator"), created.id)
    assert job.owner == "op"
    with pytest.raises(PermissionDenied):
        service.update_schedule(ctx, Principal("op", "operator"), created.id, {"enabled": False})


def test_fires_each_tick_once_and_moves_on(ctx: Context, dispatcher: MemoryDispatcher) -> None:
    service.create_schedule(ctx, ADMIN, every(10), now=T0)
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=9)) == []
    fired = service.fire_due_schedules(ctx, T0 + timedelta(seconds=10, milliseconds=3))
    assert [(f.tick, f.outcome, f.trigger) for f in fired] == [
        (T0 + timedelta(seconds=10), "submitted", "schedule")
    ]
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=10, milliseconds=5)) == []
    assert len(dispatcher.published) == 1
    info = service.get_schedule(ctx, ADMIN, "every-10")
    assert info.next_fire_at == T0 + timedelta(seconds=20)
    assert info.last_run is not None and info.last_run.job_id == fired[0].job_id
    assert service.get_job(ctx, ADMIN, fired[0].job_id or "").owner == "ada"


def test_a_fired_job_is_claimed_in_the_firing_commit_and_kept_when_the_broker_is_down(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    """One commit between the tick and the broker (each one made the tick's job
    later); with the broker down the claim is undone, so the outbox sends it."""
    service.create_schedule(ctx, ADMIN, every(10, overlap="allow"), now=T0)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    engine = ctx.sessions.kw["bind"]
    event.listen(engine, "commit", committed)
    try:
        (fired,) = service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))
    finally:
        event.remove(engine, "commit", committed)
    assert len(commits) == 1
    (plan,) = dispatcher.published
    job = service.get_job(ctx, ADMIN, fired.job_id or "")
    assert plan.job_id == job.id and plan.step_id == job.steps[0].id
    assert [t.id for t in service.job_tasks(ctx, ADMIN, job.id)] == [plan.task_id]

    dispatcher.down = True
    (late,) = service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))
    with ctx.sessions() as s:
        step = s.scalars(select(Step).where(Step.job_id == late.job_id)).one()
        assert step.dispatched_at is None and step.status == "queued"
    dispatcher.down = False
    with ctx.sessions.begin() as s:  # past the outbox's grace period
        s.execute(update(Job).values(created_at=T0))
    assert service.sweep_outbox(ctx) == 1
    assert [p.job_id for p in dispatcher.published] == [job.id, late.job_id]


@pytest.mark.parametrize(
    ("policy", "window_s", "expected"),
    [
        ("skip", 3600, [100]),
        ("once", 3600, [10, 100]),
        ("all", 3600, list(range(10, 101, 10))),
        ("all", 35, [70, 80, 90, 100]),
    ],
)
def test_catch_up_policies(ctx: Context, policy: str, window_s: int, expected: list[int]) -> None:
    data = every(10, catch_up=policy, catch_up_window_s=window_s, overlap="allow")
    service.create_schedule(ctx, ADMIN, data, now=T0)
    # No scheduler ran for 100 s; one comes back a little after the tenth tick.
    fired = service.fire_due_schedules(ctx, T0 + timedelta(seconds=100.5))
    assert [int((f.tick - T0).total_seconds()) for f in fired] == expected
    assert {f.trigger for f in fired[:-1]} <= {"catch-up"} and fired[-1].trigger == "schedule"
    assert count(ctx, Job) == len(expected)
    assert service.get_schedule(ctx, ADMIN, "every-10").next_fire_at == T0 + timedelta(seconds=110)


def test_overlap_skip_records_the_skipped_tick(ctx: Context) -> None:
    service.create_schedule(ctx, ADMIN, every(10), now=T0)
    first = service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))[0]
    second = service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))[0]
    assert second.outcome == "skipped" and second.job_id is None
    assert first.job_id and first.job_id in (runs(ctx, "every-10")[1].note or "")
    # Once the job ends, the next tick runs again.
    with ctx.sessions.begin() as s:
        s.execute(update(Job).values(status=JobStatus.COMPLETED.value))
    third = service.fire_due_schedules(ctx, T0 + timedelta(seconds=30))[0]
    assert third.outcome == "submitted"


def test_overlap_allow_starts_another(ctx: Context) -> None:
    service.create_schedule(ctx, ADMIN, every(10, overlap="allow"), now=T0)
    service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))[0].outcome == "submitted"
    assert count(ctx, Job) == 2


def test_disable_stops_firing_and_enable_does_not_catch_up(ctx: Context) -> None:
    service.create_schedule(ctx, ADMIN, every(10, catch_up="all"), now=T0)
    off = service.update_schedule(ctx, ADMIN, "every-10", {"enabled": False}, now=T0)
    assert off.next_fire_at is None
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=60)) == []
    on = service.update_schedule(
        ctx, ADMIN, "every-10", {"enabled": True}, now=T0 + timedelta(seconds=61)
    )
    assert on.next_fire_at == T0 + timedelta(seconds=70)
    fired = service.fire_due_schedules(ctx, T0 + timedelta(seconds=70))
    assert [f.tick for f in fired] == [T0 + timedelta(seconds=70)]


def test_edit_moves_the_next_tick_and_can_switch_kinds(ctx: Context) -> None:
    created = service.create_schedule(ctx, ADMIN, every(10), now=T0)
    edited = service.update_schedule(ctx, ADMIN, created.id, {"cron": "*/5 * * * *"}, now=T0)
    assert (edited.cron, edited.interval_s) == ("*/5 * * * *", None)
    assert edited.next_fire_at == T0 + timedelta(minutes=5)
    renamed = service.update_schedule(ctx, ADMIN, created.id, {"name": "five"}, now=T0)
    assert renamed.next_fire_at == edited.next_fire_at  # not a timing change
    with pytest.raises(SpecError) as caught:
        service.update_schedule(ctx, ADMIN, "five", {"timezone": "Nowhere/Land"})
    assert "timezone" in caught.value.fields
    assert service.get_schedule(ctx, ADMIN, "five").timezone == "UTC"


def test_delete_keeps_the_jobs(ctx: Context) -> None:
    service.create_schedule(ctx, ADMIN, every(10), now=T0)
    service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))
    service.delete_schedule(ctx, ADMIN, "every-10")
    assert count(ctx, Schedule) == count(ctx, ScheduleRun) == 0
    assert count(ctx, Job) == 1
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=20)) == []
    with pytest.raises(NotFoundError):
        service.get_schedule(ctx, ADMIN, "every-10")


def test_run_now_leaves_the_next_tick(ctx: Context, dispatcher: MemoryDispatcher) -> None:
    created = service.create_schedule(ctx, ADMIN, every(3600), now=T0)
    job = service.run_schedule_now(ctx, ADMIN, created.id)
    assert job.status == "queued" and len(dispatcher.published) == 1
    info = service.get_schedule(ctx, ADMIN, created.id)
    assert info.next_fire_at == created.next_fire_at
    assert info.last_run is not None and info.last_run.trigger == "manual"


def test_a_second_firing_of_a_tick_is_refused_whole(ctx: Context) -> None:
    """What a second leader with a stale view would do: fire a tick already fired."""
    service.create_schedule(ctx, ADMIN, every(10), now=T0)
    service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))
    with ctx.sessions.begin() as s:  # rewind, as a stale reader would see it
        s.execute(update(Schedule).values(next_fire_at=T0 + timedelta(seconds=10), overlap="allow"))
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=10, milliseconds=1)) == []
    assert count(ctx, Job) == count(ctx, ScheduleRun) == 1


def test_pickled_code_stays_signed_and_a_tampered_spec_fails_the_run(ctx: Context) -> None:
    fn = {"$pickle": b64encode(cloudpickle.dumps(abs))}
    spec = {"name": "m", "steps": [{"kind": "function", "function": fn, "items": [-1, -2]}]}
    created = service.create_schedule(ctx, ADMIN, {**every(10), "spec": spec}, now=T0)
    assert created.spec["steps"][0]["function"] == "<pickled value>"
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))[0].outcome == "submitted"
    with ctx.sessions.begin() as s:
        row = s.scalar(select(Schedule))
        assert row is not None
        stored = row.spec
        stored["steps"][0]["function"] = fn  # unsigned code slipped into the database
        s.execute(update(Schedule).values(spec=stored, overlap="allow"))
    fired = service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))
    assert fired[0].outcome == "failed" and fired[0].job_id is None
    assert "unsigned payload" in (runs(ctx, "every-10")[-1].note or "")
    assert count(ctx, Job) == 1


def test_patch_and_form_parsing() -> None:
    from jobsys.schedule_spec import merge_patch, parse_schedule, schedule_from_form

    current = parse_schedule(every(10))
    assert merge_patch(current, {"cron": "@hourly"}).timing.cron == "0 * * * *"
    assert merge_patch(current, {"interval_s": 30}).timing.interval_s == 30
    with pytest.raises(SpecError):
        merge_patch(current, {})
    form = {"name": "f", "interval_s": "15", "spec": '{"name": "x", "steps": []}', "enabled": "on"}
    assert schedule_from_form(form) == {
        "name": "f",
        "interval_s": 15,
        "spec": {"name": "x", "steps": []},
        "enabled": True,
    }
    with pytest.raises(SpecError) as caught:
        schedule_from_form({"spec": "{nope"})
    assert "spec" in caught.value.fields


def test_retention_forgets_only_old_finished_work(ctx: Context) -> None:
    from dataclasses import replace

    service.create_schedule(ctx, ADMIN, every(10, overlap="allow"), now=T0)
    fired = service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))
    service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))
    old, running = fired[0].job_id, service.fire_due_schedules(ctx, T0 + timedelta(seconds=30))
    with ctx.sessions.begin() as s:
        s.execute(update(Job).values(status="completed", finished_at=T0))
        s.execute(update(Job).where(Job.id == running[0].job_id).values(status="running"))
        s.execute(update(ScheduleRun).values(fired_at=T0))
    later = T0 + timedelta(days=8)
    assert service.purge_history(ctx, later) == service.Purged()  # off by default
    keeping = Context(
        settings=replace(ctx.settings, retention_days=7),
        sessions=ctx.sessions,
        dispatcher=ctx.dispatcher,
    )
    purged = service.purge_history(keeping, later)
    assert purged == service.Purged(jobs=2, schedule_runs=3)
    assert count(ctx, Job) == count(ctx, Step) == 1 and count(ctx, ScheduleRun) == 0
    with pytest.raises(NotFoundError):
        service.get_job(ctx, ADMIN, old or "")
    assert service.get_job(ctx, ADMIN, running[0].job_id or "").status == "running"


def owner_user(ctx: Context, name: str = "olga", role: str = "admin") -> Principal:
    """A schedule owner who is a real user, as one signed in (or a token of theirs) is."""
    service.add_user(ctx, SYSTEM, name=name, password="a-long-password", role=role)
    return Principal(name, role)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"role": "operator"}, "whose role is now 'operator': the 'submit' right is needed"),
        ({"disabled": True}, "its owner olga is disabled"),
        ({"role": "developer"}, None),  # still enough for what the schedule runs
    ],
)
def test_a_schedule_fires_with_its_owners_current_role(
    ctx: Context, dispatcher: MemoryDispatcher, change: dict[str, object], why: str | None
) -> None:
    olga = owner_user(ctx)
    service.create_schedule(ctx, olga, every(10, overlap="allow"), now=T0)
    first = service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))[0]
    assert first.outcome == "submitted"
    assert service.get_job(ctx, ADMIN, first.job_id or "").code_owner == "olga"
    service.update_user(ctx, SYSTEM, "olga", **change)  # type: ignore[arg-type]
    second = service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))[0]
    if why is None:
        assert second.outcome == "submitted"
        return
    assert second.outcome == "failed" and second.job_id is None
    assert why in (runs(ctx, "every-10")[-1].note or "")
    assert count(ctx, Job) == 1 and len(dispatcher.published) == 1
    # Run now is refused for the same reason, and records nothing.
    with pytest.raises(PermissionDenied) as caught:
        service.run_schedule_now(ctx, ADMIN, "every-10")
    assert why in caught.value.message
    assert count(ctx, Job) == 1 and count(ctx, ScheduleRun) == 2


def test_a_demoted_owners_code_schedule_stops_and_a_template_one_needs_start(
    ctx: Context, tmp_path: Path
) -> None:
    olga = owner_user(ctx)
    fn = {"$pickle": b64encode(cloudpickle.dumps(abs))}
    code = {"name": "m", "steps": [{"kind": "function", "function": fn, "items": [-1]}]}
    service.create_schedule(ctx, olga, {**every(10), "name": "code", "spec": code}, now=T0)
    (folder := tmp_path / "catalog" / "hello").mkdir(parents=True)
    (folder / "job.yaml").write_text(
        "steps: [{kind: docker, image: jobsys/busybox:local, command: [echo, hi]}]\n"
    )
    service.reload_catalog(ctx, ADMIN, folder.parent)
    service.create_schedule(
        ctx, olga, {"name": "tpl", "interval_s": 10, "template": "hello"}, now=T0
    )
    service.update_user(ctx, SYSTEM, "olga", role="operator")
    fired = {f.schedule: f for f in service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))}
    assert fired["code"].outcome == "failed" and fired["tpl"].outcome == "submitted"
    template_job = service.get_job(ctx, ADMIN, fired["tpl"].job_id or "")
    assert template_job.code_owner == "olga" and template_job.owner == "olga"
    service.update_user(ctx, SYSTEM, "olga", role="viewer")
    with ctx.sessions.begin() as s:
        s.execute(update(Job).values(status=JobStatus.COMPLETED.value))
    fired = {f.schedule: f for f in service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))}
    assert fired["tpl"].outcome == "failed"
    assert "'start' right is needed" in (runs(ctx, "tpl")[-1].note or "")


def test_a_service_tokens_schedule_stops_when_its_tokens_are_revoked(ctx: Context) -> None:
    service.create_token(ctx, SYSTEM, name="ci", role="admin")
    service.create_schedule(ctx, Principal("ci", "admin"), every(10, overlap="allow"), now=T0)
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=10))[0].outcome == "submitted"
    (token,) = service.list_tokens(ctx, SYSTEM)
    service.revoke_token(ctx, SYSTEM, token.id)
    assert service.fire_due_schedules(ctx, T0 + timedelta(seconds=20))[0].outcome == "failed"
    assert "every token of its owner ci is revoked" in (runs(ctx, "every-10")[-1].note or "")
