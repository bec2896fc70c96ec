"""The Schedules page in Chromium: a bad cron line is refused in the form with
the field named, a good schedule is created, run now, and disabled."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import screenshot, sign_in_with_token
from tests.support.live import LiveStack

pytestmark = pytest.mark.integration

SPEC = {
    "name": "abs-now",
    "steps": [{"kind": "function", "function": "builtins:abs", "items": [-4]}],
}


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_create_run_now_and_disable_from_the_page(
    stack: LiveStack, page: Page, expected_console: list[str]
) -> None:
    expected_console.append("status of 400")  # the form sent back with its errors
    sign_in_with_token(page, stack, "admin")
    page.get_by_role("link", name="Schedules").click()
    expect(page.get_by_role("heading", name="New schedule")).to_be_visible()

    name = f"browser-made-{uuid.uuid4().hex[:6]}"  # the session's stack keeps schedules
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Cron line").fill("every tuesday")
    page.get_by_label("Job spec (JSON)").fill(json.dumps(SPEC))
    page.get_by_role("button", name="Create schedule").click()
    expect(page.locator("#cron-help")).to_contain_text("give 5")
    expect(page.get_by_label("Cron line")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "schedules-form-error")

    page.get_by_label("Cron line").fill("")
    page.get_by_label("Interval (seconds)").fill("3600")
    page.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("every 3600 s")

    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
    page.go_back()
    page.reload()
    runs = page.locator("table").first
    expect(runs).to_contain_text("manual")
    expect(runs.get_by_role("link", name="completed")).to_be_visible()

    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("heading", name=name)).to_contain_text("disabled")
    screenshot(page, "schedule-detail")
    page.get_by_role("link", name="Schedules").click()
    expect(page.locator("table")).to_contain_text(name)
    screenshot(page, "schedules")
