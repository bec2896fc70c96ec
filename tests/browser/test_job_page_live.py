"""The job page follows a running Docker job without reloading: log lines,
status and progress, with auto-scroll that stops when the reader scrolls up."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import screenshot
from tests.support.docker import step, submit
from tests.support.live import LiveStack
from tests.support.services import require_docker

pytestmark = [pytest.mark.integration, pytest.mark.docker]

SCRIPT = (
    "for i in $(seq 1 60); do echo line $i; done; sleep 3; "
    "for i in $(seq 61 120); do echo line $i; done; sleep 3; echo last"
)


def gap_below(page: Page) -> float:
    return float(
        page.evaluate(
            "() => { const el = document.getElementById('job-logs');"
            " return el.scrollHeight - el.scrollTop - el.clientHeight; }"
        )
    )


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_job_page_streams_logs_status_and_progress(stack: LiveStack, page: Page) -> None:
    require_docker()
    job_id = submit(stack, step(SCRIPT))
    page.goto(f"{stack.url}/jobs/{job_id}")
    page.evaluate("() => { window.notReloaded = true; }")
    logs = page.locator("#job-logs")
    expect(logs).to_contain_text("line 60", timeout=20_000)
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#live-state")).to_have_text("(live)")
    assert gap_below(page) < 8  # followed to the bottom
    screenshot(page, "job-live")

    page.evaluate("() => { document.getElementById('job-logs').scrollTop = 0; }")
    expect(logs).to_contain_text("line 120", timeout=10_000)
    assert page.evaluate("() => document.getElementById('job-logs').scrollTop") == 0
    assert page.evaluate("() => window.notReloaded") is True  # all of it without a reload
    assert logs.inner_text().count("line 1\n") == 1  # the replay replaced, not doubled

    # at the end the page loads the final view once
    expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#job-progress-text")).to_have_text("1/1")
    expect(logs).to_contain_text("last")
    screenshot(page, "job-completed")
