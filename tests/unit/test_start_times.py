"""Start times (issue 19's first hold): a job given ``not_before`` or ``delay_s``
is stored ``queued`` with ``waiting`` saying until when, nothing of it reaches
the broker (the outbox sweep leaves it alone too), and beat's release sends it
once its time has come; it can be cancelled while it waits, and bad times are
a 400 that stores nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import SpecError
from jobsys.store.models import Job
from tests.support.auth import bearer
from tests.support.specs import docker_spec


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_job_with_a_start_time_waits_unsent_until_beat_releases_it(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    at = later(3600).replace(microsecond=0)
    job = service.submit_job(ctx, SYSTEM, {**docker_spec(), "not_before": at.isoformat()})
    assert (job.status, job.not_before) == ("queued", at)
    assert job.waiting == {"reason": "not_before", "detail": f"starts at {at.isoformat()}"}
    assert dispatcher.published == []
    assert service.sweep_outbox(ctx) == 0 and dispatcher.published == []
    assert service.release_due_jobs(ctx, now=at - timedelta(seconds=1)) == []
    assert service.release_due_jobs(ctx, now=at) == [job.id]
    assert [p.job_id for p in dispatcher.published] == [job.id]
    released = service.get_job(ctx, SYSTEM, job.id)
    assert released.waiting is None and released.not_before == at
    assert service.release_due_jobs(ctx, now=at + timedelta(hours=1)) == []  # once
    assert len(dispatcher.published) == 1


def test_delay_s_and_a_time_already_past(ctx: Context, dispatcher: MemoryDispatcher) -> None:
    held = service.submit_job(ctx, SYSTEM, {**docker_spec(), "delay_s": 600})
    assert held.not_before is not None
    assert 590 < (held.not_before - datetime.now(UTC)).total_seconds() <= 600
    past = service.submit_job(ctx, SYSTEM, {**docker_spec(), "not_before": "2020-01-01T00:00Z"})
    assert past.waiting is None and past.not_before is None  # a time past is now
    assert [p.job_id for p in dispatcher.published] == [past.id]


def test_a_waiting_job_can_be_cancelled_and_then_is_never_sent(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    job = service.submit_job(ctx, SYSTEM, {**docker_spec(), "delay_s": 60})
    cancelled = service.cancel_job(ctx, SYSTEM, job.id)
    assert cancelled.status == "cancelled" and cancelled.waiting is None
    assert service.release_due_jobs(ctx, now=later(120)) == []
    assert dispatcher.published == []


def test_the_api_shows_why_it_waits_and_refuses_bad_times(
    client: FlaskClient, ctx: Context
) -> None:
    headers = bearer(ctx)
    made = client.post("/api/jobs", json={**docker_spec(), "delay_s": 30}, headers=headers)
    assert made.status_code == 202
    assert made.json["waiting"]["reason"] == "not_before" and made.json["not_before"]
    shown = client.get(f"/api/jobs/{made.json['id']}", headers=headers).json
    assert shown["waiting"] == made.json["waiting"]
    for bad, field, words in (
        ({"not_before": "tomorrow"}, "not_before", "a time with its zone"),
        ({"not_before": "2026-12-02T03:00:00"}, "not_before", "a time with its zone"),
        ({"not_before": later(400 * 86400).isoformat()}, "not_before", "at most a year"),
        ({"delay_s": -5}, "delay_s", "at least 0"),
        ({"delay_s": "soon"}, "delay_s", "give a number"),
        ({"delay_s": 5, "not_before": later(5).isoformat()}, "delay_s", "not both"),
    ):
        answer = client.post("/api/jobs", json={**docker_spec(), **bad}, headers=headers)
        assert answer.status_code == 400, bad
        assert words in answer.json["fields"][field], answer.json
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_a_schedules_spec_takes_no_start_time(ctx: Context) -> None:
    spec = {**docker_spec(), "delay_s": 60}
    with pytest.raises(SpecError, match="starts at its tick"):
        service.create_schedule(ctx, SYSTEM, {"name": "n", "interval_s": 60, "spec": spec})


def test_a_rerun_of_a_job_that_waited_starts_at_once(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    job = service.submit_job(ctx, SYSTEM, {**docker_spec(), "delay_s": 60})
    again = service.rerun_job(ctx, SYSTEM, job.id)
    assert again.waiting is None and [p.job_id for p in dispatcher.published] == [again.id]


def test_the_job_list_filters_on_waiting(client: FlaskClient, ctx: Context) -> None:
    held = service.submit_job(ctx, SYSTEM, {**docker_spec(), "delay_s": 60})
    free = service.submit_job(ctx, SYSTEM, docker_spec())
    headers = bearer(ctx)

    def listed(**args: str) -> list[str]:
        answer = client.get("/api/jobs", query_string=args, headers=headers)
        return [j["id"] for j in answer.json["jobs"]]

    assert listed(waiting="1") == [held.id]
    assert listed(waiting="0") == [free.id]
    assert client.get("/api/jobs?waiting=maybe", headers=headers).status_code == 400
    page = client.get("/jobs?waiting=1", headers=headers).get_data(as_text=True)
    assert "waiting: not before" in page and '<option value="1" selected>' in page
