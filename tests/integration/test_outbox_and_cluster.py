"""The outbox when Redis is unreachable, and the cluster views: /api/workers,
the celery CLI and Flower against the same app."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import CeleryDispatcher
from jobsys.celery_app import make_celery
from jobsys.context import Context
from jobsys.store.models import Step
from tests.support.auth import csrf_of, stack_bearer
from tests.support.flower import CELERY_CLI, running_flower
from tests.support.live import (
    CELERY,
    LiveStack,
    RedisServer,
    free_port,
    private_stack,
    run_in,
    wait_until,
)
from webui import create_app

pytestmark = pytest.mark.integration


def test_submit_while_redis_is_unreachable_is_not_lost(stack: LiveStack) -> None:
    # A web app whose broker URL points at a port where nothing listens,
    # sharing the live stack's database.
    dead = replace(stack.settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    cut_off = Context(
        settings=dead,
        sessions=stack.ctx.sessions,
        dispatcher=CeleryDispatcher(make_celery(dead, publisher=True)),
    )
    web = create_app(context=cut_off).test_client()
    headers = stack_bearer(stack)
    spec = {
        "name": "outbox",
        "steps": [{"kind": "function", "function": "math:sqrt", "items": [4, 16]}],
    }
    started = time.monotonic()
    r = web.post("/api/jobs", json=spec, headers=headers)
    assert r.status_code == 202, r.json
    assert time.monotonic() - started < 10  # publishing fails fast, the request does not hang
    job_id = r.json["id"]
    assert r.json["status"] == "queued"
    stats = web.get("/api/stats", headers=headers).json
    assert "unreachable" in stats["broker"]

    # The job is in the database; once a sweep can reach Redis it runs. (This
    # sweeps in the test process; that beat and a worker do it on their own is
    # test_beat_and_a_worker_publish_a_job_stored_while_redis_was_down, slow.)
    with stack.client() as c:
        assert c.job(job_id).status == "queued"
        stack.sweep_until_sent(job_id)
        job = c.job(job_id).wait(timeout=60)
        assert job.status == "completed" and job.results() == [2.0, 4.0]


@pytest.fixture
def outbox_beat(tmp_path: Path) -> Iterator[tuple[LiveStack, RedisServer]]:
    """Web app, worker and a real ``celery beat`` on a redis-server of their own."""
    # A short leader lock: the beat that lost Redis leads again soon after it is back.
    # closing: the stack stops at once if beat never leads, not when the
    # traceback is freed
    with closing(private_stack(tmp_path, "outbox-beat", beat_lock_ttl_s=3.0)) as stacks:
        for stack, server in stacks:
            stack.spawn("beat", [*CELERY, "beat", "-l", "INFO"])
            wait_until(lambda s=stack: "now the leader" in s.log("beat"), 60, "beat to lead")
            yield stack, server


@pytest.fixture
def beat_stack(outbox_beat: tuple[LiveStack, RedisServer]) -> LiveStack:
    return outbox_beat[0]


@pytest.fixture
def redis_to_stop(outbox_beat: tuple[LiveStack, RedisServer]) -> RedisServer:
    return outbox_beat[1]


def sweeps_done(stack: LiveStack) -> bool:
    """Every housekeeping sweep beat has sent so far has run on the worker."""
    beat, worker = stack.log("beat"), stack.log("worker")
    return all(
        0
        < beat.count(f"Sending due task {entry} ({task})")
        == len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded", worker))
        for entry, task in (
            ("jobsys-outbox-sweep", "jobsys.sweep_outbox"),
            ("jobsys-sweep-lost-tasks", "jobsys.sweep_lost_tasks"),
        )
    )


@pytest.mark.slow
def test_beat_and_a_worker_publish_a_job_stored_while_redis_was_down(
    beat_stack: LiveStack, redis_to_stop: RedisServer
) -> None:
    """README: "Redis down, the job is stored and published by the outbox sweep
    when Redis is back". Redis really stops; the web app (gunicorn) stores the
    job and answers; Redis comes back; nothing in this test publishes or sweeps:
    the beat entry ``jobsys-outbox-sweep`` is sent by the real beat and run by
    the real worker, which publishes the job, and the job completes."""
    stack = beat_stack
    spec = {
        "name": "outbox-beat",
        "steps": [{"kind": "function", "function": "math:sqrt", "items": [4, 16]}],
    }
    # Redis stops while the worker holds no message: kombu 5.7's worker exits
    # ("Unrecoverable error: AttributeError ... 'hostname'", restoring its
    # unacknowledged messages on a connection that is gone) when Redis vanishes
    # under a task it holds, a separate problem from the outbox's. Beat sends both
    # sweeps together every 10 s; right after they ran there are 10 s of quiet.
    wait_until(lambda: sweeps_done(stack), 60, "beat's first sweeps to run")
    redis_to_stop.stop()
    with stack.http() as http:
        started = time.monotonic()
        r = http.post("/api/jobs", json=spec)
        assert r.status_code == 202, r.text
        assert time.monotonic() - started < 15  # publishing fails fast, the request does not hang
        job_id = r.json()["id"]
        assert r.json()["status"] == "queued"
        assert "unreachable" in http.get("/api/stats").json()["broker"]
        time.sleep(2)  # beat ticks on meanwhile, unable to reach Redis
        with stack.ctx.sessions() as session:
            (step,) = session.scalars(select(Step).where(Step.job_id == job_id))
            assert step.dispatched_at is None, "nothing could have published it yet"
        beat_seen, worker_seen = len(stack.log("beat")), len(stack.log("worker"))

        redis_to_stop.start()  # empty: no message for the job survived, only the database row
        with stack.client() as c:
            job = c.job(job_id).wait(timeout=90)
            assert job.status == "completed" and job.results() == [2.0, 4.0]
    # The publish was the beat entry's work: beat sent it once Redis was back, and
    # a sweep run by the worker published one step (the task returns how many).
    assert (
        "Sending due task jobsys-outbox-sweep (jobsys.sweep_outbox)"
        in stack.log("beat")[beat_seen:]
    )
    published = re.findall(
        r"Task jobsys\.sweep_outbox\[[^\]]+\] succeeded in [\d.]+s: (\d+)",
        stack.log("worker")[worker_seen:],
    )
    assert "1" in published, published


def test_beat_runs_the_outbox_sweep() -> None:
    from beat_schedule import BEAT_SCHEDULE
    from jobsys.broker.canvas import SWEEP_OUTBOX

    entries = {e["task"] for e in BEAT_SCHEDULE.values()}
    assert SWEEP_OUTBOX in entries
    from jobsys.celery_app import app

    app.loader.import_default_modules()
    assert SWEEP_OUTBOX in app.tasks
    assert app.conf.beat_schedule == BEAT_SCHEDULE


def test_workers_api_and_celery_cli(stack: LiveStack) -> None:
    with stack.client("viewer") as c:
        names = [w["name"] for w in c.workers()]
        assert any(n.startswith(f"it-{stack.name}@") for n in names)
        worker = next(w for w in c.workers() if w["name"].startswith(f"it-{stack.name}@"))
        assert set(worker["queues"]) == {"python", "docker"} and worker["concurrency"] == 4
    ping = run_in(stack, *CELERY, "inspect", "ping", "--timeout", "5")
    assert ping.returncode == 0, ping.stderr
    assert f"it-{stack.name}@" in ping.stdout and "pong" in ping.stdout


def test_flower_sees_our_workers_and_tasks(stack: LiveStack) -> None:
    with running_flower(stack, CELERY_CLI, FLOWER_UNAUTHENTICATED_API="true") as base:
        workers = wait_until(
            lambda: httpx.get(f"{base}/api/workers", timeout=10).json(), 30, "Flower's worker list"
        )
        assert any(name.startswith(f"it-{stack.name}@") for name in workers)
        with stack.client() as c:
            job = c.map(str, range(3), chunk_size=1).wait(timeout=60)
            task_ids = {t["id"] for t in job.tasks()}

        def seen() -> bool:
            tasks = httpx.get(f"{base}/api/tasks", timeout=10).json()
            return task_ids <= set(tasks)

        wait_until(seen, 30, "Flower's task list")
        one = httpx.get(f"{base}/api/task/info/{sorted(task_ids)[0]}", timeout=10).json()
        assert one["name"] == "jobsys.run_function_chunk" and job.id in one["args"]


def test_pages_over_http(stack: LiveStack) -> None:
    """Sign in, submit the form, see the job complete: the browser's path, over HTTP."""
    with httpx.Client(base_url=stack.url, timeout=30) as web:
        page = web.get("/login").text
        csrf = csrf_of(page)
        r = web.post("/login", data={"token": stack.token(), "csrf_token": csrf})
        assert r.status_code == 302
        form = web.get("/jobs/new").text
        csrf = csrf_of(form)
        r = web.post(
            "/jobs/new",
            data={
                "csrf_token": csrf,
                "name": "form-job",
                "image": "jobsys/busybox:local",
                "command": "sh -c 'echo from the form'",
                "timeout_s": "30",
            },
        )
        assert r.status_code == 302
        job_id = r.headers["Location"].rsplit("/", 1)[1]
        listing = web.get("/jobs").text
        assert "form-job" in listing
    with stack.client() as c:
        job = c.job(job_id)
        assert job.data["spec"]["steps"][0]["command"] == ["sh", "-c", "echo from the form"]


def test_publishing_a_chord_leaves_no_result_subscriptions(stack: LiveStack) -> None:
    """celery/celery#3812: a chord subscribes the publisher to every header result."""
    import redis

    job = stack.unpublished_job(
        {
            "steps": [
                {
                    "kind": "function",
                    "function": "math:sqrt",
                    "items": list(range(40)),
                    "chunk_size": 2,
                }
            ]
        },
    )
    assert service.dispatch_step(stack.ctx, job.steps[0].id)
    task_ids = [t.id for t in service.job_tasks(stack.ctx, SYSTEM, job.id)]
    assert len(task_ids) == 20
    r = redis.Redis.from_url(stack.settings.redis_url)
    channels = {c.decode() for c in r.pubsub_channels("celery-task-meta-*")}
    assert not {f"celery-task-meta-{t}" for t in task_ids} & channels
    with stack.client() as c:
        assert c.job(job.id).wait(timeout=60).status == "completed"
