"""Debian's Chromium driven by Playwright (never ``playwright install``), signed
in to a live stack, failing a test on any console error or outside request."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.live import LiveStack
from tests.services import CHROMIUM, require_chromium

#: Screenshots land here (CI keeps the folder as an artefact).
ARTIFACTS = Path(os.environ.get("JOBSYS_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        found = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield found
        found.close()


@pytest.fixture
def expected_console() -> list[str]:
    """Console errors a test causes on purpose (Chromium logs every 4xx page
    load, e.g. a form sent back with its errors), by a piece of their text."""
    return []


@pytest.fixture
def page(browser: Browser, stack: LiveStack, expected_console: list[str]) -> Iterator[Page]:
    context = browser.new_context()
    found = context.new_page()
    problems: list[str] = []
    found.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    found.on("pageerror", lambda exc: problems.append(str(exc)))
    host = urlparse(stack.url).netloc

    def only_ours(request: object) -> None:
        url = urlparse(request.url)  # type: ignore[attr-defined]
        if url.scheme in ("http", "https") and url.netloc != host:
            problems.append(f"request to an outside host: {request.url}")  # type: ignore[attr-defined]

    found.on("request", only_ours)
    sign_in_with_token(found, stack, "developer")
    yield found
    context.close()
    assert [p for p in problems if not any(e in p for e in expected_console)] == []


def sign_in_with_token(page: Page, stack: LiveStack, role: str, then: str = "/jobs") -> None:
    """Sign in and land on ``then`` (``/`` is where signing in goes by itself;
    the other pages are quicker to land on than the dashboard, which waits on
    Celery's inspect replies)."""
    _sign_in(page, stack, then, {"#token": stack.token(role)}, "Sign in with the token")


def sign_in_with_password(
    page: Page, stack: LiveStack, name: str, password: str, then: str = "/jobs"
) -> None:
    _sign_in(page, stack, then, {"#name": name, "#password": password}, "Sign in")


def _sign_in(page: Page, stack: LiveStack, then: str, fields: dict[str, str], button: str) -> None:
    page.goto(f"{stack.url}/login" if then == "/" else f"{stack.url}/login?next={then}")
    for selector, value in fields.items():
        page.fill(selector, value)
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(f"{stack.url}{then}")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
