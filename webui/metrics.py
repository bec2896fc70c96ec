"""``GET /metrics``: Prometheus text, protected like the API (a bearer token
with the ``view`` right; Prometheus sends one with ``authorization:`` in its
scrape config). Built with prometheus_client from one service snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobsys import service
from jobsys.auth import Right
from jobsys.service.metrics import BUCKETS, Snapshot
from jobsys.states import JobStatus
from webui.principal import context, current_principal, needs

bp = Blueprint("metrics", __name__)


def _gauge(name: str, doc: str, labels: list[str], values: dict[Any, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot
        # Every status of every project that has jobs, 0 where it has none.
        projects = {project for project, _status in s.jobs}
        by_status = {
            (project, status.value): s.jobs.get((project, status.value), 0)
            for project in projects
            for status in JobStatus
        }
        yield _gauge("jobsys_jobs", "Jobs by project and status", ["project", "status"], by_status)
        yield _gauge("jobsys_steps", "Steps by kind and status", ["kind", "status"], s.steps)
        yield _gauge(
            "jobsys_tasks",
            "Tasks (containers, chunks) by kind and state",
            ["kind", "state"],
            s.tasks,
        )
        took = HistogramMetricFamily(
            "jobsys_task_duration_seconds", "Run time of finished tasks", labels=["kind"]
        )
        for kind, d in sorted(s.durations.items()):
            buckets = [(str(b), n) for b, n in zip(BUCKETS, d.buckets, strict=True)]
            took.add_metric([kind], [*buckets, ("+Inf", d.count)], sum_value=d.total_s)
        yield took
        if s.queues is not None:
            yield _gauge("jobsys_queue_length", "Messages waiting in a queue", ["queue"], s.queues)
        up = GaugeMetricFamily("jobsys_broker_up", "1 when the broker answered this scrape")
        up.add_metric([], 0 if s.queues is None else 1)
        yield up
        if s.workers is not None:
            yield GaugeMetricFamily("jobsys_workers", "Workers answering a ping", value=s.workers)
        yield _gauge(
            "jobsys_schedule_lag_seconds",
            "How far an enabled schedule's next tick is overdue (0 while beat keeps up)",
            ["project", "schedule"],
            s.schedule_lag_s,
        )
        yield _gauge(
            "jobsys_schedule_last_lateness_seconds",
            "How late the last scheduled run was made after its tick",
            ["project", "schedule"],
            s.schedule_lateness_s,
        )


@bp.get("/metrics")
@needs(Right.VIEW)
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(service.metrics_snapshot(context(), current_principal())))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
