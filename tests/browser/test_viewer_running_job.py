"""A viewer only reads (issue 14): on a job that is *running* (the only time a
Cancel button can do anything) a viewer's page shows no Cancel, on the job page
or as the Jobs page's bulk cancel, while an operator's page does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from jobsys import service
from jobsys.auth import SYSTEM
from tests.support.browser import screenshot, sign_in_with_token
from tests.support.live import LiveStack, wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture
def running_job(stack: LiveStack) -> Iterator[tuple[str, str]]:
    """A function step that sleeps a minute on a worker: running, until cancelled."""
    name = f"sleeps-{uuid.uuid4().hex[:6]}"
    spec = {
        "name": name,
        "steps": [{"kind": "function", "function": "time:sleep", "items": [60]}],
    }
    job = service.submit_job(stack.ctx, SYSTEM, spec)
    try:
        wait_until(
            lambda: service.get_job(stack.ctx, SYSTEM, job.id).status == "running",
            30,
            "the job to run",
        )
        yield job.id, name
    finally:
        service.cancel_job(stack.ctx, SYSTEM, job.id)  # frees the worker slot


def signed_in(browser: Browser, stack: LiveStack, role: str) -> Page:
    page = browser.new_context().new_page()
    sign_in_with_token(page, stack, role)
    return page


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_a_viewer_sees_no_cancel_on_a_running_job_and_an_operator_does(
    stack: LiveStack, browser: Browser, running_job: tuple[str, str]
) -> None:
    job_id, name = running_job
    viewer, operator = signed_in(browser, stack, "viewer"), signed_in(browser, stack, "operator")
    try:
        for page in (viewer, operator):
            page.goto(f"{stack.url}/jobs/{job_id}")
            expect(page.get_by_role("heading", name=name)).to_be_visible()
            expect(page.locator("#job-status")).to_have_text("running")

        expect(operator.get_by_role("button", name=f"Cancel job {name}")).to_be_visible()
        expect(viewer.get_by_role("button", name="Cancel", exact=False)).to_have_count(0)
        expect(viewer.locator("form[action$='/cancel']")).to_have_count(0)
        screenshot(viewer, "viewer-running-job")

        # The Jobs page lists it running, with no way for the viewer to cancel it.
        for page in (viewer, operator):
            page.goto(f"{stack.url}/jobs?q={job_id}")
            expect(page.locator("tbody tr").first).to_contain_text("running")
        expect(operator.get_by_role("button", name=f"Cancel job {name}")).to_be_visible()
        expect(operator.locator("input[type=checkbox][name=job_id]")).to_have_count(1)
        expect(viewer.locator("form[action$='/cancel']")).to_have_count(0)
        expect(viewer.get_by_role("button", name="Cancel", exact=False)).to_have_count(0)
        expect(viewer.locator("input[type=checkbox][name=job_id]")).to_have_count(0)
        assert service.get_job(stack.ctx, SYSTEM, job_id).status == "running"
    finally:
        viewer.context.close()
        operator.context.close()
