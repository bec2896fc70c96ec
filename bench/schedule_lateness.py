"""make bench: how late a scheduled run starts after its tick.

Starts the live test stack plus one ``celery beat`` on the jobsys scheduler
(which also renews its leader lock each pass), then for TICKS one-second ticks:

- baseline: a hand-written loop in this process that sleeps until each whole
  second and sends Celery's built-in ``celery.accumulate`` task (no database,
  no lock, no schedule table): tick -> task finished on the worker;
- jobsys: a schedule with ``interval_s`` 1 that maps ``builtins:abs`` over one
  item: tick -> ScheduleRun and job committed ("fired"), and tick -> its task
  finished on the worker.

Prints median and worst in milliseconds and the ratio of the medians.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime

from bench.stack import bench_stack
from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.celery_app import make_celery
from jobsys.testing import LiveStack, wait_until

TICKS = 20
SPEC = {"name": "tick", "steps": [{"kind": "function", "function": "builtins:abs", "items": [-1]}]}


def baseline(stack: LiveStack) -> list[float]:
    app = make_celery(stack.settings)
    sent = []
    for _ in range(TICKS):
        tick = int(time.time()) + 1
        time.sleep(max(0.0, tick - time.time()))
        sent.append((tick, app.send_task("celery.accumulate", args=(1,), queue="python")))
    lateness = []
    for tick, result in sent:
        result.get(timeout=30)
        done: datetime = result.date_done
        lateness.append(done.replace(tzinfo=done.tzinfo or UTC).timestamp() - tick)
    return lateness


def through_jobsys(stack: LiveStack) -> tuple[list[float], list[float]]:
    ctx = stack.ctx
    body = {"name": "lateness", "interval_s": 1, "spec": SPEC, "overlap": "allow"}
    service.create_schedule(ctx, SYSTEM, body)
    wait_until(
        lambda: len(service.schedule_runs(ctx, SYSTEM, "lateness")) >= TICKS + 1,
        TICKS + 30,
        "the schedule's runs",
    )
    service.update_schedule(ctx, SYSTEM, "lateness", {"enabled": False})
    # The first run may be a late tick from before beat had settled; skip it.
    runs = sorted(service.schedule_runs(ctx, SYSTEM, "lateness", limit=500), key=lambda r: r.tick)
    runs = runs[1 : TICKS + 1]
    fired = [r.lateness_s for r in runs]
    finished = []
    for run in runs:
        assert run.job_id, run.note
        job = service.get_job(ctx, SYSTEM, run.job_id)
        if job.status != "completed":
            wait_until(
                lambda job_id=run.job_id: (
                    service.get_job(ctx, SYSTEM, job_id).status == "completed"
                ),
                30,
                "the job",
            )
        task = service.job_tasks(ctx, SYSTEM, run.job_id)[0]
        assert task.finished_at is not None
        finished.append(task.finished_at.timestamp() - run.tick.timestamp())
    return fired, finished


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{name:<34} {statistics.median(ms):>9.1f} {max(ms):>9.1f}"


def main() -> int:
    with bench_stack() as stack:
        stack.spawn(
            "beat",
            [sys.executable, "-m", "celery", "-A", "jobsys.celery_app", "beat", "-l", "INFO"],
        )
        base = baseline(stack)
        fired, finished = through_jobsys(stack)
        print(f"{TICKS} one-second ticks")
        print(f"{'ms after the tick':<34} {'median':>9} {'worst':>9}")
        print(line("baseline: sleep+send, task done", base))
        print(line("jobsys: run fired (job committed)", fired))
        print(line("jobsys: task done on the worker", finished))
        ratio = statistics.median(finished) / statistics.median(base)
        print(f"ratio (task done, medians) {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
