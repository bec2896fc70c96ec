"""``/metrics`` on the live stack (SQLite and PostgreSQL): a real job's tasks
show up in the duration histogram, workers and queues are counted."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live import LiveStack

pytestmark = pytest.mark.integration


def test_metrics_after_a_real_job(stack: LiveStack) -> None:
    with stack.client() as c:
        job = c.map(abs, [-1, -2, -3], chunk_size=1).wait(timeout=60)
        assert job.status == "completed"
    answer = httpx.get(
        f"{stack.url}/metrics", headers={"Authorization": f"Bearer {stack.token('viewer')}"}
    )
    assert answer.status_code == 200
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert values[("jobsys_task_duration_seconds_count", (("kind", "function"),))] >= 3
    assert values[("jobsys_task_duration_seconds_sum", (("kind", "function"),))] > 0
    assert values[("jobsys_jobs", (("status", "completed"),))] >= 1
    assert values[("jobsys_workers", ())] >= 1
    assert ("jobsys_queue_length", (("queue", "python"),)) in values
    assert httpx.get(f"{stack.url}/metrics").status_code == 401


def test_job_page_details_and_results_download(stack: LiveStack) -> None:
    with stack.client() as c:
        job = c.map(int, ["1", "x", "3"], chunk_size=1, tolerate_failures=True).wait(timeout=60)
    headers = {"Authorization": f"Bearer {stack.token('viewer')}"}
    page = httpx.get(f"{stack.url}/jobs/{job.id}", headers=headers).text
    assert "download JSON" in page and "/flower/task/" in page and " s</td>" in page
    assert "ValueError" in page and "traceback" in page
    download = httpx.get(f"{stack.url}/jobs/{job.id}/results.json", headers=headers)
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    outcomes = download.json()["results"]
    assert [o["ok"] for o in outcomes] == [True, False, True] and outcomes[0]["value"] == 1
