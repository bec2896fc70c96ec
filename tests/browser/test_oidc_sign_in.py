"""Single sign-on in a real browser: Chromium goes from the sign-in page to the
identity provider (run by the test on loopback), picks an account there, and
comes back signed in, with the roles its groups give; a user whose groups give
nothing comes back to a page that says why. The live stack's web app talks to
the provider over HTTP for the discovery document, the keys and the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from jobsys import service
from jobsys.auth import SYSTEM
from tests.support.browser import screenshot
from tests.support.live import LiveStack, private_stack
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, running_provider
from tests.support.specs import docker_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as found:
        found.add("dana", ["data-eng"])
        found.add("nina", ["marketing"])
        yield found


@pytest.fixture
def sso_stack(tmp_path: Path, provider: Provider) -> Iterator[LiveStack]:
    for stack, _redis in private_stack(
        tmp_path,
        "oidc",
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_name="Test IdP",
        oidc_roles="data-eng=data:developer,platform=global:admin",
    ):
        provider.redirect_uris.add(f"{stack.url}/login/oidc/callback")
        service.create_project(stack.ctx, SYSTEM, "data")
        yield stack


def test_signing_in_through_the_provider_in_chromium(
    browser: Browser, sso_stack: LiveStack, provider: Provider
) -> None:
    mine = service.submit_job(sso_stack.ctx, SYSTEM, {**docker_spec(), "name": "data-job",
                                                      "project": "data"})  # fmt: skip
    theirs = service.submit_job(sso_stack.ctx, SYSTEM, {**docker_spec(), "name": "other-job"})
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{sso_stack.url}/login?next=/jobs")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{provider.url}/authorize?*")
    expect(page.get_by_role("heading", name="Test IdP sign-in")).to_be_visible()
    page.select_option("#account", "dana")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso_stack.url}/jobs")
    expect(page.get_by_text("dana (developer in data)")).to_be_visible()
    expect(page.get_by_role("link", name="data-job")).to_be_visible()
    expect(page.get_by_role("link", name="other-job")).to_have_count(0)  # default is not hers
    screenshot(page, "oidc-signed-in")
    assert page.goto(f"{sso_stack.url}/jobs/{theirs.id}").status == 404
    assert page.goto(f"{sso_stack.url}/jobs/{mine.id}").status == 200

    # Signed out, someone whose groups give no role comes back to the reason.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.select_option("#account", "nina")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso_stack.url}/login/oidc/callback?*")
    expect(page.get_by_role("alert")).to_contain_text("none of your groups (marketing)")
    screenshot(page, "oidc-refused")
    assert page.goto(f"{sso_stack.url}/jobs").url.startswith(f"{sso_stack.url}/login")
    context.close()
    assert provider.refusals == []
