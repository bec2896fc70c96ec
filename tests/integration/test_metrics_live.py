"""``/metrics`` on the live stack (SQLite and PostgreSQL): the figures move by
exactly what this test's own jobs did.

The stack is shared by the session, but tests run one at a time and nothing
else submits work to it (no beat runs there), so once it is idle (no message
waiting, no task in a worker's hands) nothing but this test's jobs can move a
figure between the scrape before and the scrape after: every delta below is exact, where a
``>= 1`` was met by any earlier test's jobs."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobsys.celery_app import make_celery
from tests.support.auth import stack_bearer
from tests.support.live import LiveStack

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(stack: LiveStack) -> Samples:
    answer = httpx.get(
        f"{stack.url}/metrics",
        headers=stack_bearer(stack, "viewer"),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def idle(stack: LiveStack, timeout: float = 60) -> Samples:
    """A scrape taken once no earlier test's work can still move a figure: no
    message waits in a queue and the workers hold no task (running or reserved),
    twice in a row. (A job left queued or running by an earlier test is fine: with
    no beat on this stack and nothing in a worker's hands, nothing moves it.)"""
    app = make_celery(stack.settings, publisher=True)
    busy: object = None
    quiet = 0
    deadline = time.monotonic() + timeout
    try:
        names = [name for reply in app.control.ping(timeout=1) for name in reply]
        while time.monotonic() < deadline:
            waiting = {q: n for q, n in stack.ctx.dispatcher.queue_lengths().items() if n}
            inspect = app.control.inspect(destination=names, limit=len(names), timeout=2)
            held = [inspect.active(), inspect.reserved()]
            if None in held:
                busy = "no worker answered the inspection"
            else:
                busy = waiting or [t for replies in held for ts in replies.values() for t in ts]
            quiet = 0 if busy else quiet + 1
            if quiet == 2:
                return scrape(stack)
            time.sleep(0.3)
    finally:
        app.close()
    raise AssertionError(f"the shared stack never went idle: {busy}")


def test_metrics_move_by_what_our_jobs_did(stack: LiveStack) -> None:
    before = idle(stack)
    with stack.client() as c:
        # 2 jobs completed (3 + 2 chunks); 1 failed: both its chunks ran to their
        # end, one with an item that raised, which fails the step and the job.
        done = [c.map(abs, [-1, -2, -3], chunk_size=1), c.map(abs, [4, 5], chunk_size=1)]
        broken = c.map(int, ["1", "x"], chunk_size=1)
        assert [j.wait(timeout=60).status for j in done] == ["completed", "completed"]
        assert broken.wait(timeout=60).status == "failed"
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("jobsys_jobs", project="default", status="completed") == 2
    assert delta("jobsys_jobs", project="default", status="failed") == 1
    for status in ("queued", "running", "cancelled"):
        assert delta("jobsys_jobs", project="default", status=status) == 0
    assert delta("jobsys_steps", kind="function", status="completed") == 2
    assert delta("jobsys_steps", kind="function", status="failed") == 1
    assert delta("jobsys_tasks", kind="function", state="completed") == 7
    for state in ("pending", "running", "failed", "cancelled"):
        assert delta("jobsys_tasks", kind="function", state=state) == 0
    # Every finished chunk is timed once: 7 in the count, each under 5 min.
    count = delta("jobsys_task_duration_seconds_count", kind="function")
    assert count == 7
    assert delta("jobsys_task_duration_seconds_bucket", kind="function", le="+Inf") == 7
    assert delta("jobsys_task_duration_seconds_bucket", kind="function", le="300.0") == 7
    assert 0 < delta("jobsys_task_duration_seconds_sum", kind="function") < 7 * 300
    assert delta("jobsys_task_duration_seconds_count", kind="docker") == 0
    # The stack's worker (a drill may add its own), an empty queue once everything ran.
    assert after[("jobsys_workers", ())] >= 1
    assert after[("jobsys_broker_up", ())] == 1
    assert after[("jobsys_queue_length", (("queue", "python"),))] == 0
    assert httpx.get(f"{stack.url}/metrics").status_code == 401


def test_job_page_details_and_results_download(stack: LiveStack) -> None:
    with stack.client() as c:
        job = c.map(int, ["1", "x", "3"], chunk_size=1, tolerate_failures=True).wait(timeout=60)
    headers = stack_bearer(stack, "viewer")
    page = httpx.get(f"{stack.url}/jobs/{job.id}", headers=headers).text
    assert "download JSON" in page and "/flower/task/" in page and " s</td>" in page
    assert "ValueError" in page and "traceback" in page
    download = httpx.get(f"{stack.url}/jobs/{job.id}/results.json", headers=headers)
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    outcomes = download.json()["results"]
    assert [o["ok"] for o in outcomes] == [True, False, True] and outcomes[0]["value"] == 1
