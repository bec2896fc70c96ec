"""The submit form and the job page in Chromium, against the live stack: a
Docker job submitted from the form streams its log lines while it runs, a
running job is cancelled from its page (and its container goes), and both work
with JavaScript switched off, where the pages fall back to forms and
``<meta refresh>``."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import screenshot, sign_in_with_token
from tests.support.docker import containers_of, step, submit
from tests.support.live import LiveStack, wait_until
from tests.support.services import BUSYBOX_IMAGE, require_docker

pytestmark = [pytest.mark.integration, pytest.mark.docker]

FIVE_LINES = 'sh -c "for i in 1 2 3 4 5; do echo line-$i; sleep 1; done"'


def unique(prefix: str) -> str:
    """The session's stack keeps every job, so each test names its own."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def fill_docker_form(page: Page, name: str, command: str, tags: str = "") -> None:
    page.get_by_label("Job name").fill(name)
    expect(page.get_by_label("Image")).to_have_value(BUSYBOX_IMAGE)  # the form's default
    page.get_by_label("Command").fill(command)
    page.get_by_label("Tags").fill(tags)
    page.get_by_role("button", name="Submit", exact=True).click()


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_submit_from_the_form_and_watch_the_logs_arrive(stack: LiveStack, page: Page) -> None:
    require_docker()
    name = unique("form-five-lines")
    page.get_by_role("link", name="Submit", exact=True).click()
    expect(page.get_by_role("heading", name="Submit a Docker job")).to_be_visible()
    fill_docker_form(page, name, FIVE_LINES, tags="browser, team=qa")

    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]+$"))
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    page.evaluate("() => { window.notReloaded = true; }")
    logs = page.locator("#job-logs")
    # The job prints one line a second: line-2 shows up while it still runs,
    # put there by the page's EventSource, not by a reload.
    expect(logs).to_contain_text("line-2", timeout=20_000)
    expect(page.locator("#job-status")).to_have_text("running")
    expect(logs).not_to_contain_text("line-5")
    assert page.evaluate("() => window.notReloaded") is True
    screenshot(page, "form-job-running")

    expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#job-status")).to_have_class(re.compile(r"\bstatus-completed\b"))
    expect(logs).to_contain_text("line-5")
    assert logs.inner_text().count("line-1") == 1
    facts = page.locator(".facts")
    expect(facts).to_contain_text("test-developer")
    expect(facts.get_by_role("link", name="browser", exact=True)).to_be_visible()
    expect(facts.get_by_role("link", name="team=qa", exact=True)).to_be_visible()
    screenshot(page, "form-job-completed")


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_cancel_a_running_docker_job_from_its_page(stack: LiveStack, page: Page) -> None:
    require_docker()
    name = unique("to-cancel")
    job_id = submit(stack, step("echo up; sleep 60", stop_grace_s=1), name=name)
    wait_until(lambda: containers_of(job_id), 30, "the container to start")
    page.goto(f"{stack.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#job-logs")).to_contain_text("up", timeout=10_000)

    page.get_by_role("button", name=f"Cancel job {name}").click()
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=10_000)
    expect(page.get_by_role("button", name=f"Cancel job {name}")).to_have_count(0)
    expect(page.locator(".facts")).to_contain_text("cancelled by test-developer")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    wait_until(lambda: not containers_of(job_id), 15, "the container to go")
    screenshot(page, "job-cancelled")


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_sign_in_submit_and_read_without_javascript(stack: LiveStack, browser: Browser) -> None:
    require_docker()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        sign_in_with_token(page, stack, "developer")
        page.goto(f"{stack.url}/jobs/new")
        name = unique("no-js")
        fill_docker_form(page, name, 'sh -c "echo without-js; sleep 1"', tags="nojs")
        page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]+$"))
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        # No EventSource here: the <noscript> meta refresh reloads the page
        # every 3 s until the job is over.
        expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
        expect(page.locator("#job-logs")).to_contain_text("without-js")
        screenshot(page, "no-js-job")

        page.goto(f"{stack.url}/jobs")
        page.get_by_label("Tag").fill("nojs")
        page.get_by_label("Search").fill(name)
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("table[data-refresh-part=list] tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(name)
        expect(rows.first).to_contain_text("completed")
    finally:
        context.close()
    assert problems == []
