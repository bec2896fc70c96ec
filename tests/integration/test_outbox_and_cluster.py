"""The outbox when Redis is unreachable, and the cluster views: /api/workers,
the celery CLI and Flower against the same app."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import CeleryDispatcher
from jobsys.celery_app import make_celery
from jobsys.context import Context
from tests.support.live import LiveStack, free_port, wait_until
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
    headers = {"Authorization": f"Bearer {stack.token()}"}
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

    # The job is in the database; once a sweep can reach Redis it runs.
    with stack.client() as c:
        assert c.job(job_id).status == "queued"
        stack.sweep_until_sent(job_id)
        job = c.job(job_id).wait(timeout=60)
        assert job.status == "completed" and job.results() == [2.0, 4.0]


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
    ping = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jobsys.celery_app",
            "inspect",
            "ping",
            "--timeout",
            "5",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ping.returncode == 0, ping.stderr
    assert f"it-{stack.name}@" in ping.stdout and "pong" in ping.stdout


def test_flower_sees_our_workers_and_tasks(stack: LiveStack) -> None:
    port = free_port()
    stack.spawn(
        "flower",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jobsys.celery_app",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
        ],
        FLOWER_UNAUTHENTICATED_API="true",
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/healthcheck").status_code == 200, 30, "Flower")
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
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = web.post("/login", data={"token": stack.token(), "csrf_token": csrf})
        assert r.status_code == 302
        form = web.get("/jobs/new").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
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
