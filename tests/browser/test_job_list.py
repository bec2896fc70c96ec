"""The job list in Chromium: its filter form (status, owner, tag, search,
time range, sort) narrows the rows, and while jobs run the list refreshes in
place (refresh.js) without losing a ticked box."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.support.browser import screenshot
from tests.support.docker import containers_of, step
from tests.support.live import LiveStack, wait_until
from tests.support.services import require_docker

pytestmark = pytest.mark.integration


def function_job(
    name: str, items: list[Any], *, function: str = "builtins:abs", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [{"kind": "function", "function": function, "items": items}],
        **extra,
    }


def post_job(stack: LiveStack, spec: dict[str, Any], role: str = "developer") -> str:
    with stack.http(role) as http:
        r = http.post("/api/jobs", json=spec)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])


def wait_for(stack: LiveStack, job_id: str) -> str:
    with stack.client() as c:
        return str(c.job(job_id).wait(timeout=60).status)


def rows(page: Page) -> Locator:
    return page.locator("table[data-refresh-part=list] tbody tr")


def row_of(page: Page, name: str) -> Locator:
    return rows(page).filter(has=page.get_by_role("link", name=name, exact=True))


def expect_names(page: Page, *names: str) -> None:
    """Exactly these jobs are listed, in this order."""
    expect(rows(page).locator("td:nth-child(2) > a:first-child")).to_have_text(list(names))


def filter_by(page: Page, **fields: str) -> None:
    """Fill the filter form like a reader would (by label) and send it."""
    form = page.get_by_role("form", name="Filter jobs")
    for label, value in fields.items():
        control = form.get_by_label(label, exact=True)
        if control.evaluate("el => el.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    form.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_filters_narrow_the_list(stack: LiveStack, page: Page) -> None:
    p = f"flt{uuid.uuid4().hex[:6]}"
    tag = f"{p}-tag"
    ids = [
        post_job(stack, function_job(f"{p}-alpha", [-1], tags=[tag, "team=qa"])),
        post_job(stack, function_job(f"{p}-beta", [-1], function="math:sqrt", tags=[tag])),
        post_job(stack, function_job(f"{p}-gamma", [-2]), role="admin"),
    ]
    assert [wait_for(stack, i) for i in ids] == ["completed", "failed", "completed"]
    alpha, beta, gamma = f"{p}-alpha", f"{p}-beta", f"{p}-gamma"

    page.get_by_role("link", name="Jobs", exact=True).click()
    filter_by(page, Search=p)
    expect_names(page, gamma, beta, alpha)  # newest first
    filter_by(page, Status="failed")
    expect_names(page, beta)
    expect(row_of(page, beta).locator(".badge")).to_have_text("failed")
    filter_by(page, Status="", Owner="test-admin")
    expect_names(page, gamma)
    expect(page.get_by_label("Owner", exact=True)).to_have_value("test-admin")  # kept in the form
    filter_by(page, Owner="", Sort="name")
    expect_names(page, alpha, beta, gamma)
    filter_by(page, Since="2099-01-01T00:00")
    expect(rows(page)).to_have_text(["No jobs match these filters."])
    filter_by(page, Since="", Until="2099-01-01T00:00")
    expect_names(page, alpha, beta, gamma)
    screenshot(page, "jobs-filtered")

    # a tag on a row links to the list of that tag, and the form shows it
    page.get_by_role("link", name="clear").click()
    filter_by(page, Search=p)
    row_of(page, alpha).get_by_role("link", name=tag, exact=True).click()
    page.wait_for_url(f"{stack.url}/jobs?tag={tag}")
    expect_names(page, beta, alpha)
    expect(page.get_by_label("Tag", exact=True)).to_have_value(tag)
    filter_by(page, Status="completed")
    expect_names(page, alpha)
    filter_by(page, Status="", Tag="team=qa", Search=p)
    expect_names(page, alpha)
    # the owner on a row links to that owner's jobs
    filter_by(page, Tag="")
    row_of(page, alpha).get_by_role("link", name="test-developer").click()
    expect(page.get_by_label("Owner", exact=True)).to_have_value("test-developer")
    assert "owner=test-developer" in page.url


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_the_list_refreshes_in_place_but_not_over_a_ticked_box(
    stack: LiveStack, page: Page
) -> None:
    require_docker()
    p = f"rfr{uuid.uuid4().hex[:6]}"
    long, short, later, paused = (f"{p}-{n}" for n in ("long", "short", "later", "paused"))

    def docker_job(name: str, script: str) -> str:
        return post_job(stack, {"name": name, "steps": [step(script, stop_grace_s=1)]})

    long_id = docker_job(long, "sleep 30")
    docker_job(short, "sleep 2")
    # With jobs running the page asks to be refreshed every 2 s.
    page.goto(f"{stack.url}/jobs?q={p}")
    expect(page.locator("[data-refresh-ms]")).to_have_attribute("data-refresh-ms", "2000")
    page.evaluate("() => { window.notReloaded = true; }")
    expect(row_of(page, short).locator(".badge")).to_have_text("completed", timeout=20_000)
    post_job(stack, function_job(later, [-3]))
    expect(row_of(page, later)).to_be_visible(timeout=10_000)
    assert page.evaluate("() => window.notReloaded") is True  # swapped in, not reloaded

    # A box ticked while a refresh is on its way is not swapped away when the
    # answer lands: the refresh is held back here until the box is ticked.
    on_the_way: list[Route] = []
    page.route(f"**/jobs?q={p}", lambda route: on_the_way.append(route))
    for _ in range(50):  # the page asks every 2 s; the handler runs while Playwright waits
        if on_the_way:
            break
        page.wait_for_timeout(100)
    assert on_the_way, "no refresh within 5 s"
    box = row_of(page, long).get_by_role("checkbox")
    box.check()
    with page.expect_response(f"**/jobs?q={p}"):
        on_the_way[0].continue_()
    page.unroute(f"**/jobs?q={p}")
    page.wait_for_timeout(200)  # the answer is parsed, and would be swapped in
    expect(box).to_be_checked()

    # A ticked box holds the list still: nothing is swapped from under it.
    held = page.locator("[data-refresh-ms]").get_attribute("data-refreshed-at")
    assert held is not None  # it had refreshed before: the short job's row changed
    paused_id = post_job(stack, function_job(paused, [-4]))
    assert wait_for(stack, paused_id) == "completed"
    page.wait_for_timeout(4_500)  # more than two refresh intervals
    expect(row_of(page, long).get_by_role("checkbox")).to_be_checked()
    expect(row_of(page, paused)).to_have_count(0)
    assert page.locator("[data-refresh-ms]").get_attribute("data-refreshed-at") == held

    # Untick and look away: the refreshing resumes and the new job shows up.
    box.uncheck()
    page.get_by_role("heading", name="Jobs").click()  # moves the focus off the box
    expect(row_of(page, paused)).to_be_visible(timeout=10_000)
    assert page.evaluate("() => window.notReloaded") is True
    screenshot(page, "jobs-refreshed")

    # The ticked box still works as a selection for "Cancel selected".
    row_of(page, long).get_by_role("checkbox").check()
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.get_by_role("status")).to_have_text("cancelled 1 job(s)")
    expect(row_of(page, long).locator(".badge")).to_have_text("cancelled")
    wait_until(lambda: not containers_of(long_id), 15, "the container to go")
