"""Security headers on every answer (issue 14, item 16): every route of the
app's url map, signed in or not, page or API, success or error, carries a
Content-Security-Policy without inline script, frame-ancestors 'none' and
X-Frame-Options DENY, nosniff and Referrer-Policy same-origin. Flower's proxied
pages get a policy of their own, the only one that allows inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from jobsys.context import Context
from tests.support.auth import bearer, signed_in
from webui import create_app

TEMPLATES = Path(__file__).parents[2] / "webui" / "templates"
FIXED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def directives(response: TestResponse) -> dict[str, str]:
    policy = response.headers.get("Content-Security-Policy", "")
    return {
        part.split()[0]: " ".join(part.split()[1:])
        for part in (p.strip() for p in policy.split(";"))
        if part
    }


def check(response: TestResponse, path: str) -> None:
    for name, value in FIXED.items():
        assert response.headers.get(name) == value, (path, name, response.status_code)
    found = directives(response)
    assert found.get("frame-ancestors") == "'none'", (path, found)
    assert found.get("object-src") == "'none'", (path, found)
    if path.startswith("/flower"):
        assert found["script-src"] == "'self' 'unsafe-inline'", (path, found)
        return
    assert found.get("default-src") == "'self'", (path, found)
    assert found.get("script-src") == "'self'", (path, found)
    assert found.get("style-src") == "'self'", (path, found)


def every_request(client: FlaskClient) -> list[tuple[str, str]]:
    """(method, path) for every rule and method of the url map, arguments filled in."""
    app = client.application
    requests = []
    for rule in app.url_map.iter_rules():
        values = {
            name: "style.css" if name == "filename" else 1 if name.endswith("_id") else "x"
            for name in rule.arguments
        }
        path = rule.build(values, append_unknown=False)[1]  # type: ignore[index]
        methods = sorted((rule.methods or set()) - {"OPTIONS"})
        if rule.endpoint.startswith("flower."):
            methods = ["GET", "POST"]  # each tries to reach a Flower that is not running
        requests.extend((method, path) for method in methods)
    return requests


@pytest.mark.parametrize("who", ["nobody", "token", "page"])
def test_every_route_carries_the_security_headers(ctx: Context, who: str) -> None:
    client = signed_in(ctx, "admin") if who == "page" else create_app(context=ctx).test_client()
    headers = bearer(ctx, "admin") if who == "token" else {}
    requests = every_request(client)
    assert len(requests) > 60
    statuses = set()
    for method, path in requests:
        response = client.open(path, method=method, headers=headers)
        statuses.add(response.status_code)
        check(response, path)
    assert 200 in statuses  # the sign-in page, the OpenAPI document and static files, at least


def test_signed_in_pages_and_their_assets(ctx: Context) -> None:
    client = signed_in(ctx, "admin")
    for path in ("/", "/jobs", "/catalog", "/static/job_live.js", "/static/style.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        check(response, path)


#: What a Content-Security-Policy without 'unsafe-inline' would block in a template.
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I), "an on...= handler"),
    (re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I), "a style= attribute"),
    (re.compile(r"<style", re.I), "a <style> element"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_no_template_holds_inline_script_or_style() -> None:
    found = [
        f"{page.name}: {what}"
        for page in sorted(TEMPLATES.glob("*.html"))
        for pattern, what in INLINE
        if pattern.search(page.read_text())
    ]
    assert found == []
