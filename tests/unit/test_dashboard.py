"""The dashboard: per-hour counts and failure rate, queue load, live workers,
recent failures, the chart's geometry, the page and the API, and the ETA."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import fakeredis
from sqlalchemy import update

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.canvas import priority_lists
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.store.models import Job, Step, TaskRun
from tests.support.specs import docker_spec

NOW = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)
DEV = Principal("dev", "developer")


def seed(ctx: Context, created: datetime, status: str, finished: datetime | None = None) -> str:
    job = service.submit_job(ctx, DEV, docker_spec())
    with ctx.sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                created_at=created,
                status=status,
                finished_at=finished,
                error="exit 1" if status == "failed" else None,
            )
        )
    return job.id


def test_hours_rates_queues_and_failures(
    ctx: Context, broker: tuple[Context, fakeredis.FakeRedis]
) -> None:
    hour = NOW.replace(minute=0)
    seed(ctx, hour - timedelta(hours=30), "completed", hour - timedelta(hours=30))  # too old
    seed(ctx, hour - timedelta(hours=2, minutes=-5), "completed", hour - timedelta(hours=1))
    seed(ctx, hour - timedelta(hours=2, minutes=-10), "failed", hour - timedelta(hours=1))
    seed(ctx, hour - timedelta(hours=2, minutes=-20), "failed", hour - timedelta(hours=1))
    seed(ctx, hour - timedelta(hours=2, minutes=-30), "cancelled", hour - timedelta(hours=1))
    running = seed(ctx, hour + timedelta(minutes=5), "running")
    with ctx.sessions.begin() as s:
        step_id = s.query(Step.id).filter(Step.job_id == running).scalar()
        for n in range(3):  # three containers of the job run at once
            s.add(TaskRun(id=f"t-run{n}", job_id=running, step_id=step_id, state="running"))
        s.add(
            TaskRun(
                id="t-done", job_id=running, step_id=step_id, state="completed", finished_at=NOW
            )
        )
    on_broker, redis = broker
    # Waiting messages sit in one list per priority level: docker has 1 (at
    # level 9), python 1 + 2 (plain and level 3). Docker is the busier queue
    # (1 waiting + 3 running) though python has more waiting.
    redis.rpush(priority_lists("docker")[9], b"m")
    redis.rpush(priority_lists("python")[0], b"m")
    redis.rpush(priority_lists("python")[3], b"m", b"m")
    beat = time.time()  # list_workers judges heartbeats by the wall clock
    on_broker.dispatcher.record_heartbeat("w1", {"ts": beat - 1, "active": 1, "processed": 3})
    on_broker.dispatcher.record_heartbeat("w2", {"ts": beat - 60, "active": 0, "processed": 9})

    board = service.dashboard(on_broker, Principal("v", "viewer"), now=NOW)

    assert len(board.hours) == 24 and board.hours[-1].start == hour
    by_start = {h.start: h for h in board.hours}
    two_ago, one_ago = by_start[hour - timedelta(hours=2)], by_start[hour - timedelta(hours=1)]
    assert two_ago.submitted == 4 and two_ago.ended == 0 and two_ago.failure_rate is None
    assert (one_ago.completed, one_ago.failed, one_ago.cancelled) == (1, 2, 1)
    assert one_ago.failure_rate == 0.5
    assert by_start[hour].submitted == 1
    assert board.submitted_last_day == 5  # the 30-hour-old job is outside the window
    assert board.failure_rate_last_day == 0.5
    assert board.counts["failed"] == 2 and board.counts["running"] == 1

    # Busiest (waiting + running) first, not most waiting first.
    assert [(q.name, q.waiting, q.running, q.busy) for q in board.queues] == [
        ("docker", 1, 3, 4),
        ("python", 3, 0, 3),
    ]
    assert board.queues[0].done_last_hour == 1
    assert [w.name for w in board.workers] == ["w1"]  # w2 is lost: not live
    assert [j.error for j in board.recent_failures] == ["exit 1", "exit 1"]

    data = board.to_dict()
    assert data["last_24h"]["hours"][-2]["failure_rate"] == 0.5
    assert [(q["name"], q["waiting"]) for q in data["queues"]] == [("docker", 1), ("python", 3)]


def test_queues_equally_busy_put_the_one_that_did_more_first(
    ctx: Context, broker: tuple[Context, fakeredis.FakeRedis]
) -> None:
    job = service.submit_job(
        ctx, DEV, {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1]}]}
    )
    with ctx.sessions.begin() as s:
        step_id = s.query(Step.id).filter(Step.job_id == job.id).scalar()
        done = NOW - timedelta(minutes=10)
        s.add(
            TaskRun(id="t-py", job_id=job.id, step_id=step_id, state="completed", finished_at=done)
        )
    board = service.dashboard(broker[0], SYSTEM, now=NOW)
    # Nothing waits or runs anywhere: python did work in the last hour, so it
    # comes before docker although the names alone would put docker first.
    assert [(q.name, q.busy, q.done_last_hour) for q in board.queues] == [
        ("python", 0, 1),
        ("docker", 0, 0),
    ]


def test_broker_down_still_shows_the_database_figures(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    seed(ctx, NOW - timedelta(minutes=5), "failed", NOW)
    dispatcher.down = True
    board = service.dashboard(ctx, SYSTEM, now=NOW)
    assert board.broker_problem and board.workers == ()
    assert all(q.waiting is None for q in board.queues)
    assert board.hours[-1].failed == 1


def test_chart_geometry() -> None:
    from jobsys.service.dashboard import Hour
    from webui.charts import _nice_ceiling, hourly_chart

    assert [_nice_ceiling(n) for n in (0, 1, 3, 7, 10, 11, 260)] == [1, 1, 5, 10, 10, 20, 500]
    hours = [Hour(start=NOW + timedelta(hours=i)) for i in range(24)]
    hours[3] = Hour(start=hours[3].start, submitted=10, completed=3, failed=1)
    hours[4] = Hour(start=hours[4].start, submitted=5, completed=1, failed=1)
    hours[10] = Hour(start=hours[10].start, submitted=2, failed=2)
    chart = hourly_chart(hours)
    tallest = chart.bars[3]
    assert chart.max_count == 10 and tallest.y == chart.plot_top
    assert tallest.height == chart.plot_bottom - chart.plot_top
    assert chart.bars[4].height == tallest.height / 2 and chart.bars[0].height == 0
    assert "25% of 4 ended failed" in tallest.title
    # Hours 3-4 make one line, hour 10 (100% failed) a lone dot at the top.
    assert len(chart.rate_lines) == 2 and chart.rate_lines[0].count(",") == 2
    assert chart.rate_points[-1][1] == chart.plot_top
    assert [t.label for t in chart.ticks] == ["18:00", "00:00", "06:00", "12:00"]


def test_page_and_api(ctx: Context) -> None:
    from tests.support.auth import bearer, signed_in

    failed = seed(ctx, datetime.now(UTC) - timedelta(minutes=3), "failed", datetime.now(UTC))
    client = signed_in(ctx, "viewer")
    page = client.get("/").get_data(as_text=True)
    assert '<svg class="chart"' in page and "<title" in page
    assert f'href="/jobs/{failed}"' in page and "exit 1" in page
    assert 'data-refresh-part="queues"' in page and "refresh.js" in page
    assert "cdn" not in page.lower() and "https://" not in page
    api = client.application.test_client()
    data = api.get("/api/dashboard", headers=bearer(ctx, "viewer")).json
    assert data["jobs"]["failed"] == 1 and data["recent_failures"][0]["id"] == failed
    assert api.get("/api/dashboard").status_code == 401


def test_eta_from_the_pace_so_far(ctx: Context) -> None:
    spec = {
        "name": "map",
        "steps": [{"kind": "function", "function": "math:sqrt", "items": list(range(10))}],
    }
    spec["steps"][0]["chunk_size"] = 1
    job = service.submit_job(ctx, DEV, spec)
    assert job.eta_s() is None  # queued
    started = NOW - timedelta(seconds=40)
    with ctx.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job.id).values(status="running", started_at=started))
        s.execute(update(Step).where(Step.job_id == job.id).values(done_tasks=4))
    running = service.get_job(ctx, SYSTEM, job.id)
    assert running.eta_s(NOW) == 60.0  # 4 tasks in 40 s: 6 left take 60 s
    assert running.to_dict()["progress"]["eta_s"] is not None
    from webui import _format_eta

    assert [_format_eta(s) for s in (0.2, 42, 150, 7200)] == [
        "about 1 s left",
        "about 42 s left",
        "about 2 min left",
        "about 2.0 h left",
    ]
