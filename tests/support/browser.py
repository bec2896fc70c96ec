"""Browser helpers: signing in through the login page, and screenshots."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page

from tests.support.live import LiveStack

#: Screenshots land here (CI keeps the folder as an artefact).
ARTIFACTS = Path(os.environ.get("JOBSYS_TEST_ARTIFACTS", "test-artifacts"))


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
