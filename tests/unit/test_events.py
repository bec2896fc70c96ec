"""Job events on a Redis Stream (fakeredis): publishing, replay from an event
id, following to the end, and the server-sent events endpoint."""

from __future__ import annotations

import json
import logging
import threading

import fakeredis
import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.broker.events import GLOBAL_STREAM, LIVE_STREAM_TTL_S, RedisEventBus, job_stream
from jobsys.context import Context
from tests.support.auth import bearer
from tests.support.events import run_docker_job, sse_events
from tests.support.specs import docker_spec
from webui import create_app
from workers.function_step import captured_output

#: a follower looks at the database after 50 ms without news, not 5 s
pytestmark = pytest.mark.usefixtures("quick_followers")


@pytest.fixture
def ctx(ctx: Context, fake_redis: fakeredis.FakeRedis) -> Context:
    return Context(
        settings=ctx.settings,
        sessions=ctx.sessions,
        dispatcher=ctx.dispatcher,
        events=RedisEventBus(fake_redis),
    )


def test_a_job_publishes_status_progress_and_lines_in_order(
    ctx: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    fake_redis: fakeredis.FakeRedis,
) -> None:
    job_id = run_docker_job(ctx, dispatcher, developer, ["one", "two"])
    events = ctx.events.read(job_id, "0", block_ms=0)
    kinds = [(e.type, e.data.get("status") or e.data.get("line")) for e in events]
    assert kinds == [
        ("status", "running"),
        ("log", "one"),
        ("log", "two"),
        ("status", "running"),  # the task done: progress 1/1
        ("status", "completed"),
    ]
    assert events[3].data["progress"] == {"done": 1, "total": 1}
    assert events[-1].data["steps"] == [{"position": 0, "status": "completed"}]
    # the dashboard's global stream carries the changes, not the lines
    assert [json.loads(f[b"data"])["status"] for _, f in fake_redis.xrange(GLOBAL_STREAM)] == [
        "running",
        "running",
        "completed",
    ]
    # a finished job's stream expires after the finished-job TTL (a day by default),
    # shorter than the week every live stream gets, and a late line does not extend it
    assert 0 < fake_redis.ttl(job_stream(job_id)) <= 24 * 3600 < LIVE_STREAM_TTL_S
    ctx.events.publish(job_id, "log", {"line": "late"})
    assert fake_redis.ttl(job_stream(job_id)) <= 24 * 3600


def test_follow_replays_exactly_what_came_after_the_given_id(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job_id = run_docker_job(ctx, dispatcher, developer, ["one", "two", "three"])
    everything = [e for e in service.follow_job(ctx, developer, job_id) if e is not None]
    assert everything[-1].data["status"] == "completed"
    seen = everything[1]  # the reader got "one" then lost its connection
    assert seen.data["line"] == "one"
    resumed = [e for e in service.follow_job(ctx, developer, job_id, seen.id) if e is not None]
    assert resumed == everything[2:]


def test_follow_ends_from_the_database_when_the_stream_is_gone(
    ctx: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    fake_redis: fakeredis.FakeRedis,
) -> None:
    job_id = run_docker_job(ctx, dispatcher, developer, ["one"])
    fake_redis.delete(job_stream(job_id))  # trimmed, or lost in a Redis restart
    (last,) = list(service.follow_job(ctx, developer, job_id))
    assert last is not None and last.type == "status" and last.data["status"] == "completed"
    # and the stored logs are still there
    assert [entry.line for entry in service.job_logs(ctx, developer, job_id)] == ["one"]


def test_cancel_is_announced(ctx: Context, developer: Principal) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    service.cancel_job(ctx, developer, job.id)
    (event,) = ctx.events.read(job.id, "0", block_ms=0)
    assert event.data["status"] == "cancelled" and event.data["error"] == "cancelled by dev"


def test_function_output_is_handed_over_line_by_line_as_written() -> None:
    live: list[str] = []
    with captured_output("[items 0-9]", on_line=lambda r: live.append(r.line)) as records:
        print("first", end="")
        assert live == []  # not a line yet
        print(" half")
        assert live == ["[items 0-9] first half"]
        print("second\nthird")
        logging.getLogger("user").warning("careful")
    assert live == [
        "[items 0-9] first half",
        "[items 0-9] second",
        "[items 0-9] third",
        "[items 0-9] WARNING user: careful",
    ]
    assert [r.line for r in records] == live
    assert [r.stream for r in records] == ["stdout"] * 3 + ["stderr"]


def test_sse_endpoint_replays_from_last_event_id_and_ends(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job_id = run_docker_job(ctx, dispatcher, developer, ["one", "two"])
    client: FlaskClient = create_app(context=ctx).test_client()
    headers = bearer(ctx, "viewer")
    r = client.get(f"/api/jobs/{job_id}/events", headers=headers)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    full = sse_events(r.get_data(as_text=True))
    assert [e["event"] for e in full] == ["status", "log", "log", "status", "status", "end"]
    r = client.get(
        f"/api/jobs/{job_id}/events", headers={**headers, "Last-Event-ID": full[1]["id"]}
    )
    assert sse_events(r.get_data(as_text=True)) == full[2:]
    # a browser's EventSource cannot set headers on the first request
    r = client.get(f"/api/jobs/{job_id}/events?last_event_id={full[3]['id']}", headers=headers)
    assert sse_events(r.get_data(as_text=True)) == full[4:]


def test_sse_endpoint_refuses_before_streaming(ctx: Context, developer: Principal) -> None:
    client: FlaskClient = create_app(context=ctx).test_client()
    assert client.get("/api/jobs/nope/events").status_code == 401
    r = client.get("/api/jobs/nope/events", headers=bearer(ctx, "viewer"))
    assert r.status_code == 404 and r.mimetype == "application/json"


def test_a_revoke_from_celery_cancels_the_job(
    ctx: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(ctx, developer, docker_spec())
    task_id = dispatcher.published[-1].task_id
    assert service.cancel_for_revoked_task(ctx, task_id, terminated=True) == job.id
    done = service.get_job(ctx, developer, job.id)
    assert done.status == "cancelled"
    assert done.error == f"cancelled: task {task_id} was terminated in Celery"
    # our own cancel's revokes come back through the same signal: nothing more happens
    assert service.cancel_for_revoked_task(ctx, task_id, terminated=True) is None
    assert service.cancel_for_revoked_task(ctx, "not-a-jobsys-task", terminated=False) is None


def test_every_stream_has_a_ttl_from_its_first_event(
    ctx: Context, fake_redis: fakeredis.FakeRedis
) -> None:
    """A job that never ends (lost, or its end event lost) still leaves no key for ever."""
    ctx.events.publish("never-ends", "status", {"status": "running"})
    assert 24 * 3600 < fake_redis.ttl(job_stream("never-ends")) <= LIVE_STREAM_TTL_S


def test_a_read_that_may_not_wait_answers_at_once(ctx: Context) -> None:
    """block_ms=0 is "do not wait" (Redis's BLOCK 0 would wait for ever)."""
    answers: list[object] = []
    reader = threading.Thread(
        target=lambda: answers.append(ctx.events.read("no-such-job", "0", block_ms=0)),
        daemon=True,
    )
    reader.start()
    reader.join(timeout=5)
    assert answers == [[]], "the read waited for an event that never came"


def test_chunk_progress_is_published_at_most_every_interval_and_the_end_always(
    ctx: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    fake_redis: fakeredis.FakeRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thousand chunks need not send a thousand events: within the interval
    (made an hour here, so no clock decides the test) only the first chunk's end
    is told, and the step's end, with the final count, still is."""
    from jobsys.service import progress
    from tests.support.specs import function_spec

    monkeypatch.setattr(progress, "_PROGRESS_EVERY_S", 3600.0)
    job = service.submit_job(ctx, developer, function_spec([1, 2, 3], chunk_size=1))
    plan = dispatcher.published[0]
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        service.finish_task(ctx, chunk.task_id, ok=True, results=[{"ok": True, "value": 1}])
    service.gather_function_step(ctx, plan.step_id)
    statuses = [e.data for e in ctx.events.read(job.id, "0", block_ms=0) if e.type == "status"]
    assert [(s["status"], s["progress"]["done"]) for s in statuses] == [
        ("running", 0),  # the step began
        ("running", 1),  # the first chunk done; the next two within the interval
        ("completed", 3),
    ]
