"""How late a scheduled run's task is done after its tick.

- baseline: a hand-written loop that sleeps until each whole second and
  sends the raw app's no-op task (no database, no lock, no schedule table):
  tick -> task done on the raw worker (the result's ``date_done``);
- jobsys: a schedule with ``interval_s`` 1 mapping ``builtins:abs`` over one
  item, run by ``celery beat`` on the jobsys scheduler (started for this row
  only): tick -> its task's ``finished_at``.

The ticks are cut into ``reps`` equal groups; each group's median is a rep.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

from bench.env import JobsysStack, RawWorker
from bench.results import Row
from jobsys.testing import wait_until

SPEC = {"name": "tick", "steps": [{"kind": "function", "function": "builtins:abs", "items": [-1]}]}


def groups(values: list[float], reps: int) -> list[float]:
    """The medians of ``reps`` consecutive equal groups of ``values``."""
    size = max(1, len(values) // reps)
    return [statistics.median(values[i * size : (i + 1) * size]) for i in range(reps)]


def by_hand(raw: RawWorker, ticks: int) -> list[float]:
    from bench.raw_app import noop

    with raw.measuring():
        noop.delay(0).get(timeout=30)
        sent = []
        for _ in range(ticks):
            tick = int(time.time()) + 1
            time.sleep(max(0.0, tick - time.time()))
            sent.append((tick, noop.apply_async((1,))))
        lateness = []
        for tick, result in sent:
            result.get(timeout=30)
            done: datetime = result.date_done
            lateness.append((done.replace(tzinfo=done.tzinfo or UTC).timestamp() - tick) * 1000)
    return lateness


def through_jobsys(stack: JobsysStack, ticks: int) -> list[float]:
    with stack.beat(), stack.client("admin") as client:
        name = f"lateness-{int(time.time())}"
        client.create_schedule(name, SPEC, interval_s=1, overlap="allow")
        try:
            wait_until(
                lambda: len(client.schedule_runs(name, limit=500)) >= ticks + 1,
                ticks + 60,
                "the schedule's runs",
            )
        finally:
            client.update_schedule(name, enabled=False)
        runs = sorted(client.schedule_runs(name, limit=500), key=lambda r: r["tick"])
        # The first run may be a late tick from before beat had settled; skip it.
        lateness = []
        for run in runs[1 : ticks + 1]:
            if not run["job_id"]:
                raise AssertionError(f"a run made no job: {run['note']}")
            job = client.job(run["job_id"]).wait(timeout=60)
            finished = job.tasks()[0]["finished_at"]
            tick = datetime.fromisoformat(run["tick"]).timestamp()
            lateness.append((datetime.fromisoformat(finished).timestamp() - tick) * 1000)
    return lateness


def schedule_row(stack: JobsysStack, raw: RawWorker, ticks: int, reps: int) -> Row:
    base = groups(by_hand(raw, ticks), reps)
    ours = groups(through_jobsys(stack, ticks), reps)
    return Row(
        "schedule tick to task done",
        "ms",
        2.0,
        base,
        ours,
        f"interval 1 s, {ticks} ticks in {reps} groups; baseline = sleep-and-send loop "
        "on raw Celery",
    )
