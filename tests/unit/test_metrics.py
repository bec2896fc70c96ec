"""``GET /metrics``: Prometheus text from the database, behind the API's auth."""

from __future__ import annotations

import time
from datetime import timedelta

import fakeredis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.canvas import priority_lists
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.store.models import Schedule, TaskRun, utcnow
from tests.support.auth import bearer, bearer_of
from tests.support.specs import docker_spec
from webui import create_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_report_jobs_tasks_durations_and_schedules(
    ctx: Context, dispatcher: MemoryDispatcher, broker: tuple[Context, fakeredis.FakeRedis]
) -> None:
    on_broker, redis = broker
    client = create_app(context=on_broker).test_client()
    assert client.get("/metrics").status_code == 401
    service.submit_job(ctx, SYSTEM, docker_spec())
    service.submit_job(ctx, SYSTEM, docker_spec())
    task_id = dispatcher.published[0].task_id
    assert service.start_task(ctx, task_id, "w1") is not None
    with ctx.sessions.begin() as s:  # this task ran for 2 s
        s.execute(
            update(TaskRun)
            .where(TaskRun.id == task_id)
            .values(started_at=utcnow() - timedelta(seconds=2), finished_at=utcnow())
        )
    service.create_schedule(ctx, SYSTEM, {"name": "late", "interval_s": 60, "spec": docker_spec()})
    with ctx.sessions.begin() as s:  # as if beat had been down for 90 s
        s.execute(update(Schedule).values(next_fire_at=utcnow() - timedelta(seconds=90)))
    # The broker's own numbers: one list per priority level, summed per queue.
    redis.rpush(priority_lists("docker")[0], b"m", b"m")
    redis.rpush(priority_lists("docker")[5], b"m")
    redis.rpush(priority_lists("python")[9], b"m")
    beat = time.time()  # list_workers judges heartbeats by the wall clock
    on_broker.dispatcher.record_heartbeat("w1", {"ts": beat - 1})
    on_broker.dispatcher.record_heartbeat("w2", {"ts": beat - 2})
    on_broker.dispatcher.record_heartbeat("gone", {"ts": beat - 60})  # lost: not counted
    answer = client.get("/metrics", headers=bearer(ctx, "viewer"))
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    got = samples(answer.get_data(as_text=True))
    assert got[("jobsys_jobs", (("project", "default"), ("status", "queued")))] == 1
    assert got[("jobsys_jobs", (("project", "default"), ("status", "running")))] == 1
    assert got[("jobsys_jobs", (("project", "default"), ("status", "failed")))] == 0
    assert got[("jobsys_tasks", (("kind", "docker"), ("state", "running")))] == 1
    assert got[("jobsys_task_duration_seconds_count", (("kind", "docker"),))] == 1
    assert got[("jobsys_task_duration_seconds_bucket", (("kind", "docker"), ("le", "1.0")))] == 0
    assert got[("jobsys_task_duration_seconds_bucket", (("kind", "docker"), ("le", "2.5")))] == 1
    assert 1.9 < got[("jobsys_task_duration_seconds_sum", (("kind", "docker"),))] < 2.5
    assert got[("jobsys_queue_length", (("queue", "docker"),))] == 3
    assert got[("jobsys_queue_length", (("queue", "python"),))] == 1
    assert got[("jobsys_broker_up", ())] == 1
    assert got[("jobsys_workers", ())] == 2
    lag = got[("jobsys_schedule_lag_seconds", (("project", "default"), ("schedule", "late")))]
    assert 89 < lag < 100


def test_broker_down_reports_broker_up_0_and_no_queue_or_worker_figures(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    service.submit_job(ctx, SYSTEM, docker_spec())
    dispatcher.down = True
    answer = create_app(context=ctx).test_client().get("/metrics", headers=bearer(ctx, "viewer"))
    got = samples(answer.get_data(as_text=True))
    assert got[("jobsys_broker_up", ())] == 0
    assert not {name for name, _ in got} & {"jobsys_queue_length", "jobsys_workers"}
    # the database still answers
    assert got[("jobsys_jobs", (("project", "default"), ("status", "queued")))] == 1


def test_a_project_member_scrapes_their_projects_figures_only(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    """The labels say whose jobs and schedules they are; a member's token sees
    only its project's (the queues and workers are everyone's)."""
    service.create_project(ctx, SYSTEM, "data")
    service.submit_job(ctx, SYSTEM, {**docker_spec(), "project": "data"})
    service.submit_job(ctx, SYSTEM, docker_spec())
    spec = {"name": "late", "interval_s": 60, "spec": docker_spec()}
    service.create_schedule(ctx, SYSTEM, {**spec, "project": "data"})
    service.create_schedule(ctx, SYSTEM, spec)  # the same name, in default
    client = create_app(context=ctx).test_client()
    member = service.create_token(ctx, SYSTEM, name="m", role="viewer", project="data").token
    everyone = service.create_token(ctx, SYSTEM, name="g", role="viewer", global_token=True).token
    mine = samples(client.get("/metrics", headers=bearer_of(member)).get_data(as_text=True))
    jobs = {labels: v for (name, labels), v in mine.items() if name == "jobsys_jobs" and v}
    assert jobs == {(("project", "data"), ("status", "queued")): 1}
    lags = [labels for name, labels in mine if name == "jobsys_schedule_lag_seconds"]
    assert lags == [(("project", "data"), ("schedule", "late"))]
    every = samples(client.get("/metrics", headers=bearer_of(everyone)).get_data(as_text=True))
    lags = sorted(labels for name, labels in every if name == "jobsys_schedule_lag_seconds")
    assert lags == [
        (("project", "data"), ("schedule", "late")),
        (("project", "default"), ("schedule", "late")),
    ]
