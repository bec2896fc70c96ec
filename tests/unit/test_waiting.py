"""Waiting for jobs to end (``?wait=`` and ``POST /api/jobs/wait``) without a
network: what is refused and why, and what a wait answers when nothing has
to be waited for. The waiting itself, on real Redis and a real worker, is in
tests/integration/test_waiting.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.errors import PermissionDenied, SpecError
from jobsys.service.stream_slots import acquire_slot
from jobsys.states import JobStatus
from tests.support.auth import bearer
from tests.support.events import play_docker_step
from tests.support.specs import docker_spec, function_spec
from webui import create_app

#: A principal whose role has no rights at all (not even view).
NOBODY = Principal(name="nobody", role="nothing")


def ended_job(ctx: Context, dispatcher: MemoryDispatcher, developer: Principal) -> str:
    job = service.submit_job(ctx, developer, docker_spec())
    play_docker_step(ctx, dispatcher.published[-1])
    return job.id


@pytest.mark.parametrize("wait", ["0", "-1", "60.5", "61", "abc", "nan", "inf", "", "1e400"])
def test_a_bad_wait_is_a_400_naming_wait(
    ctx: Context, client: FlaskClient, developer: Principal, wait: str
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    r = client.get(f"/api/jobs/{job.id}?wait={wait}", headers=bearer(ctx, "viewer"))
    assert r.status_code == 400, r.json
    assert "wait" in r.json["fields"] and "at most 60" in r.json["fields"]["wait"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ids"),
        ({"ids": []}, "ids"),
        ({"ids": "abc"}, "ids"),
        ({"ids": [f"id{n}" for n in range(1001)]}, "ids"),
        ({"ids": ["ok", 7]}, "ids[1]"),
        ({"ids": ["x" * 65]}, "ids[0]"),
        ({"ids": ["a"], "timeout_s": 0}, "timeout_s"),
        ({"ids": ["a"], "timeout_s": 61}, "timeout_s"),
        ({"ids": ["a"], "timeout_s": True}, "timeout_s"),
        ({"ids": ["a"], "timeout_s": "soon"}, "timeout_s"),
    ],
)
def test_a_bad_many_jobs_wait_is_a_400_naming_the_field(
    ctx: Context, client: FlaskClient, body: dict[str, object], field: str
) -> None:
    r = client.post("/api/jobs/wait", json=body, headers=bearer(ctx, "viewer"))
    assert r.status_code == 400, r.json
    assert field in r.json["fields"], r.json


def test_the_service_checks_the_view_right(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    """Not only the route: a caller without view is refused before anything is read."""
    job_id = ended_job(ctx, dispatcher, developer)
    with pytest.raises(PermissionDenied):
        service.wait_for_job(ctx, NOBODY, job_id, 1)
    with pytest.raises(PermissionDenied):
        service.wait_for_jobs(ctx, NOBODY, [job_id], 1)
    # and the check comes before the input's: no hint of what would have been valid
    with pytest.raises(PermissionDenied):
        service.wait_for_jobs(ctx, NOBODY, [], "soon")


def test_without_a_token_the_waits_are_401(client: FlaskClient, ctx: Context) -> None:
    assert client.get("/api/jobs/x?wait=1").status_code == 401
    assert client.post("/api/jobs/wait", json={"ids": ["x"]}).status_code == 401


def test_an_unknown_job_is_404_at_once(ctx: Context, client: FlaskClient) -> None:
    r = client.get("/api/jobs/no-such-job?wait=60", headers=bearer(ctx, "viewer"))
    assert r.status_code == 404


def test_an_ended_job_is_answered_at_once_with_the_wait_header(
    ctx: Context, dispatcher: MemoryDispatcher, client: FlaskClient, developer: Principal
) -> None:
    job_id = ended_job(ctx, dispatcher, developer)
    r = client.get(f"/api/jobs/{job_id}?wait=60", headers=bearer(ctx, "viewer"))
    assert r.status_code == 200 and r.json["status"] == "completed"
    assert r.headers["Jobsys-Wait"] == "1"
    plain = client.get(f"/api/jobs/{job_id}", headers=bearer(ctx, "viewer"))
    assert plain.json == r.json and "Jobsys-Wait" not in plain.headers


def test_many_jobs_sorts_ended_open_and_missing(
    ctx: Context, dispatcher: MemoryDispatcher, client: FlaskClient, developer: Principal
) -> None:
    done = ended_job(ctx, dispatcher, developer)
    queued = service.submit_job(ctx, developer, docker_spec()).id
    ids = [queued, "no-such-job", done, done]
    r = client.post(
        "/api/jobs/wait", json={"ids": ids, "timeout_s": 60}, headers=bearer(ctx, "viewer")
    )
    assert r.status_code == 200, r.json
    assert [j["id"] for j in r.json["ended"]] == [done]
    assert r.json["ended"][0]["status"] == "completed"
    assert r.json["open"] == [queued]
    assert r.json["missing"] == ["no-such-job"]


def test_nothing_ended_answers_after_the_timeout_with_the_open_ids(
    ctx: Context, client: FlaskClient, developer: Principal
) -> None:
    """No live events here (a null event bus): the wait reads the database until
    the deadline, and answers with the job as it is."""
    queued = service.submit_job(ctx, developer, docker_spec()).id
    r = client.post(
        "/api/jobs/wait", json={"ids": [queued], "timeout_s": 0.3}, headers=bearer(ctx, "viewer")
    )
    assert r.json == {"ended": [], "open": [queued], "missing": []}
    one = client.get(f"/api/jobs/{queued}?wait=0.3", headers=bearer(ctx, "viewer"))
    assert one.status_code == 200 and one.json["status"] == "queued"


def test_a_full_live_pool_is_429_with_retry_after(
    ctx: Context, developer: Principal, viewer: Principal
) -> None:
    """A wait that must block holds a live slot, as a stream does; one for a job
    that already ended needs none."""
    capped = replace(ctx, settings=replace(ctx.settings, streams_per_principal=1))
    app: Flask = create_app(context=capped)
    client = app.test_client()
    headers = bearer(capped, "viewer")
    reader = service.authenticate(capped, headers["Authorization"].split()[1])
    queued = service.submit_job(capped, developer, docker_spec()).id
    done = ended_job(capped, capped.dispatcher, developer)  # type: ignore[arg-type]
    with acquire_slot(capped, reader):
        r = client.get(f"/api/jobs/{queued}?wait=5", headers=headers)
        many = client.post("/api/jobs/wait", json={"ids": [queued]}, headers=headers)
        at_once = client.get(f"/api/jobs/{done}?wait=5", headers=headers)
    assert r.status_code == 429 and r.headers["Retry-After"] == "10"
    assert r.json["error"] == "TooManyStreams"
    assert many.status_code == 429 and many.headers["Retry-After"] == "10"
    assert at_once.status_code == 200 and at_once.json["status"] == "completed"


def test_parse_wait_takes_numbers_and_text() -> None:
    assert service.parse_wait_s("0.25", "wait") == 0.25
    assert service.parse_wait_s(60, "wait") == 60.0
    with pytest.raises(SpecError) as refused:
        service.parse_wait_s(None, "timeout_s")
    assert "timeout_s" in refused.value.fields


# -- GET /api/jobs/<id>/results?wait=S: the end and the first page in one answer --


def ended_function_job(ctx: Context, dispatcher: MemoryDispatcher, developer: Principal) -> str:
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3], chunk_size=2))
    plan = dispatcher.published[-1]
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        values = [{"ok": True, "value": v * 10} for v in ([1, 2] if chunk.index == 0 else [3])]
        service.finish_task(ctx, chunk.task_id, ok=True, results=values, failed_items=0)
    assert service.gather_function_step(ctx, plan.step_id) is JobStatus.COMPLETED
    return job.id


def test_results_with_wait_of_an_ended_job_are_the_page_at_once(
    ctx: Context, dispatcher: MemoryDispatcher, client: FlaskClient, developer: Principal
) -> None:
    job_id = ended_function_job(ctx, dispatcher, developer)
    headers = bearer(ctx, "viewer")
    r = client.get(f"/api/jobs/{job_id}/results?wait=60&limit=2", headers=headers)
    assert r.status_code == 200, r.json
    assert r.headers["Jobsys-Wait"] == "1"
    assert r.json["ended"] is True
    assert [o["value"] for o in r.json["results"]] == [10, 20]
    assert r.json["next_offset"] == 2
    plain = client.get(f"/api/jobs/{job_id}/results?limit=2", headers=headers)
    assert {**plain.json, "ended": True} == r.json and "Jobsys-Wait" not in plain.headers


def test_results_with_wait_of_an_open_job_give_the_job_at_the_deadline(
    ctx: Context, client: FlaskClient, developer: Principal
) -> None:
    """No live events here: the wait reads the database until the deadline, then
    says the job has not ended, with the job as it is and no results."""
    queued = service.submit_job(ctx, developer, function_spec([1])).id
    r = client.get(f"/api/jobs/{queued}/results?wait=0.3", headers=bearer(ctx, "viewer"))
    assert r.status_code == 200, r.json
    assert r.json["ended"] is False and "results" not in r.json
    assert r.json["job_id"] == queued and r.json["job"]["id"] == queued
    assert r.json["job"]["status"] == "queued"
    # without wait, the same request is still refused until the job ends
    plain = client.get(f"/api/jobs/{queued}/results", headers=bearer(ctx, "viewer"))
    assert plain.status_code == 409


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("wait=0", "wait"),
        ("wait=61", "wait"),
        ("wait=soon", "wait"),
        ("wait=60&limit=20001", "limit"),
    ],
)
def test_results_with_a_bad_wait_or_page_are_a_400_at_once(
    ctx: Context, client: FlaskClient, developer: Principal, query: str, field: str
) -> None:
    """Checked before any wait: an open job would otherwise hold the caller 60 s."""
    queued = service.submit_job(ctx, developer, function_spec([1])).id
    r = client.get(f"/api/jobs/{queued}/results?{query}", headers=bearer(ctx, "viewer"))
    assert r.status_code == 400, r.json
    assert field in r.json["fields"], r.json


def test_results_with_wait_check_view_and_find_no_unknown_job(
    ctx: Context, client: FlaskClient, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job_id = ended_function_job(ctx, dispatcher, developer)
    queued = service.submit_job(ctx, developer, function_spec([1])).id
    for some in (job_id, queued):  # refused whether or not there would be results to read
        with pytest.raises(PermissionDenied):
            service.wait_for_results(ctx, NOBODY, some, 0.2)
    assert client.get(f"/api/jobs/{job_id}/results?wait=1").status_code == 401
    r = client.get("/api/jobs/no-such-job/results?wait=60", headers=bearer(ctx, "viewer"))
    assert r.status_code == 404


def test_results_with_wait_hold_a_live_slot(ctx: Context, developer: Principal) -> None:
    capped = replace(ctx, settings=replace(ctx.settings, streams_per_principal=1))
    client = create_app(context=capped).test_client()
    headers = bearer(capped, "viewer")
    reader = service.authenticate(capped, headers["Authorization"].split()[1])
    queued = service.submit_job(capped, developer, function_spec([1])).id
    done = ended_function_job(capped, capped.dispatcher, developer)  # type: ignore[arg-type]
    with acquire_slot(capped, reader):
        refused = client.get(f"/api/jobs/{queued}/results?wait=5", headers=headers)
        at_once = client.get(f"/api/jobs/{done}/results?wait=5", headers=headers)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "10"
    assert at_once.status_code == 200 and at_once.json["ended"] is True


def test_an_ended_job_comes_with_its_first_outcomes_when_asked(
    ctx: Context, dispatcher: MemoryDispatcher, client: FlaskClient, developer: Principal
) -> None:
    """``results=N`` on the job and on the many-jobs wait: the same page
    ``/results?limit=N`` gives, so a one-call job needs no third request."""
    job_id = ended_function_job(ctx, dispatcher, developer)
    headers = bearer(ctx, "viewer")
    page = client.get(f"/api/jobs/{job_id}/results?limit=2", headers=headers).json
    one = client.get(f"/api/jobs/{job_id}?wait=60&results=2", headers=headers)
    assert one.status_code == 200, one.json
    assert one.json["results"] == page
    assert [o["value"] for o in page["results"]] == [10, 20] and page["next_offset"] == 2
    plain = client.get(f"/api/jobs/{job_id}?results=100", headers=headers).json
    assert [o["value"] for o in plain["results"]["results"]] == [10, 20, 30]
    assert plain["results"]["next_offset"] is None
    assert "results" not in client.get(f"/api/jobs/{job_id}", headers=headers).json
    many = client.post(
        "/api/jobs/wait", json={"ids": [job_id], "timeout_s": 60, "results": 2}, headers=headers
    )
    assert many.status_code == 200, many.json
    assert many.json["ended"][0]["results"] == page


def test_inline_outcomes_are_only_for_ended_jobs_with_results(
    ctx: Context, dispatcher: MemoryDispatcher, client: FlaskClient, developer: Principal
) -> None:
    headers = bearer(ctx, "viewer")
    docker = ended_job(ctx, dispatcher, developer)
    queued = service.submit_job(ctx, developer, function_spec([1])).id
    for job_id in (docker, queued):
        r = client.get(f"/api/jobs/{job_id}?results=10", headers=headers)
        assert r.status_code == 200 and "results" not in r.json, r.json
    many = client.post(
        "/api/jobs/wait",
        json={"ids": [docker, queued], "timeout_s": 0.2, "results": 10},
        headers=headers,
    )
    assert [j["id"] for j in many.json["ended"]] == [docker]
    assert "results" not in many.json["ended"][0]


@pytest.mark.parametrize("results", ["0", "101", "-1", "x"])
def test_a_bad_results_count_is_a_400_before_any_wait(
    ctx: Context, client: FlaskClient, developer: Principal, results: str
) -> None:
    """An open job would otherwise hold the caller for the whole wait first."""
    queued = service.submit_job(ctx, developer, function_spec([1])).id
    headers = bearer(ctx, "viewer")
    r = client.get(f"/api/jobs/{queued}?wait=60&results={results}", headers=headers)
    assert r.status_code == 400 and "results" in r.json["fields"], r.json
    body = {"ids": [queued], "timeout_s": 60, "results": int(results) if results != "x" else "x"}
    many = client.post("/api/jobs/wait", json=body, headers=headers)
    assert many.status_code == 400 and "results" in many.json["fields"], many.json
