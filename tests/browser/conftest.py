"""Debian's Chromium driven by Playwright (never ``playwright install``), signed
in to a live stack, failing a test on any console error or outside request."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser import sign_in_with_token
from tests.support.live import LiveStack
from tests.support.services import CHROMIUM, require_chromium


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
