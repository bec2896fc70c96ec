"""Roles in Chromium: an operator signs in with a password, starts a catalog
template from its generated form and watches it run; a viewer sees no Start or
Cancel and gets 403 from the API."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from jobsys import service
from jobsys.auth import SYSTEM
from tests.support.auth import stack_bearer
from tests.support.browser import screenshot, sign_in_with_password
from tests.support.live import LiveStack
from tests.support.services import require_docker

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_operator_starts_a_template_and_a_viewer_cannot(
    stack: LiveStack, page: Page, browser: Browser, expected_console: list[str]
) -> None:
    require_docker()
    expected_console.append("status of 400")  # the start form sent back with its errors
    service.reload_catalog(stack.ctx, SYSTEM)
    # Names of this test's own: the session's stack keeps users between tests.
    olive, victor = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("olive", "victor"))
    for name, role in ((olive, "operator"), (victor, "viewer")):
        service.add_user(stack.ctx, SYSTEM, name=name, password=f"{name}-password", role=role)

    page.context.clear_cookies()  # the fixture signed in with a token; use a password
    sign_in_with_password(page, stack, olive, f"{olive}-password")
    expect(page.get_by_role("link", name="Submit", exact=True)).to_have_count(
        0
    )  # operators do not submit
    page.get_by_role("link", name="Catalog").click()
    page.get_by_role("link", name="Start echo").click()
    page.get_by_label("message").fill("no <tags> please")
    page.get_by_role("button", name="Start echo").click()
    expect(page.locator("#var-message-help")).to_contain_text("must match the pattern")
    screenshot(page, "template-form-error")
    page.get_by_label("message").fill("from the form")
    page.get_by_label("times").fill("2")
    page.get_by_role("button", name="Start echo").click()
    expect(page.locator("#job-logs")).to_contain_text("2: from the form", timeout=30_000)
    expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
    job_url = page.url
    screenshot(page, "template-job")

    viewer = browser.new_context()
    seen = viewer.new_page()
    sign_in_with_password(seen, stack, victor, f"{victor}-password")
    seen.goto(f"{stack.url}/catalog")
    expect(seen.locator("table")).to_contain_text("echo")
    expect(seen.get_by_role("link", name="Start echo")).to_have_count(0)
    seen.goto(job_url)
    expect(seen.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(seen.get_by_role("button", name="Rerun")).to_have_count(0)
    screenshot(seen, "viewer-job")
    viewer.close()
    r = httpx.post(
        f"{stack.url}/api/catalog/echo/start",
        json={"variables": {}},
        headers=stack_bearer(stack, "viewer"),
    )
    assert r.status_code == 403 and r.json()["right"] == "start"
