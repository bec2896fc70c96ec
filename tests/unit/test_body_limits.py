"""Request body limits per route (issue 14, item 7): every JSON route takes at
most 64 KiB (JOBSYS_MAX_JSON_BODY_BYTES), counted after gzip is inflated,
except the routes that carry specs or items, which keep JOBSYS_MAX_PAYLOAD_BYTES.

The routes are walked from the app's url map, so a new route gets the small
limit unless it is added to the table below (written by hand, from the issue)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from flask import Flask
from werkzeug.routing import Rule

from jobsys.context import Context
from tests.support.auth import bearer
from tests.support.specs import docker_spec
from webui import create_app

SMALL = 64 * 1024
#: (method, rule) of the routes whose bodies are specs, items or template variables.
LARGE_BODIES = {
    ("POST", "/api/jobs"),
    ("POST", "/api/schedules"),
    ("PATCH", "/api/schedules/<ref>"),
    ("POST", "/api/catalog/<name>/start"),
    ("POST", "/api/catalog/<name>/render"),
}


def padded(body: Any, size: int) -> bytes:
    """``body`` as JSON, padded with whitespace (still valid JSON) to ``size`` bytes."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


def api_routes(app: Flask) -> list[tuple[str, Rule]]:
    return [
        (method, rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]


def path_of(rule: Rule) -> str:
    return rule.build({name: 1 if name.endswith("_id") else "x" for name in rule.arguments})[1]


def test_the_table_names_real_routes(ctx: Context) -> None:
    found = {(m, r.rule) for m, r in api_routes(create_app(context=ctx))}
    assert found >= LARGE_BODIES


def test_every_other_json_route_refuses_a_body_over_64_kib(ctx: Context) -> None:
    app = create_app(context=ctx)
    client = app.test_client()
    headers = {**bearer(ctx, "admin"), "Content-Type": "application/json"}
    refused, passed = [], []
    for method, rule in api_routes(app):
        r = client.open(path_of(rule), method=method, data=padded({}, SMALL + 1), headers=headers)
        if (method, rule.rule) in LARGE_BODIES:
            assert r.status_code != 413, (method, rule.rule, r.get_json())
            passed.append(rule.rule)
            continue
        assert r.status_code == 413, (method, rule.rule, r.status_code, r.get_data()[:300])
        assert r.json["error"] == "PayloadTooLarge"
        assert "JOBSYS_MAX_JSON_BODY_BYTES" in r.json["fields"]["body"]
        refused.append(rule.rule)
    assert len(refused) > 20 and len(passed) == len(LARGE_BODIES)


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("/api/tokens", {"name": "t", "role": "viewer"}, 201),
        ("/api/users", {"name": "u", "password": "long enough pw", "role": "viewer"}, 201),
    ],
)
def test_a_body_under_the_limit_is_served_and_inflated_over_it_is_refused(
    ctx: Context, path: str, body: dict[str, str], status: int
) -> None:
    client = create_app(context=ctx).test_client()
    headers = {**bearer(ctx, "admin"), "Content-Type": "application/json"}
    assert client.post(path, data=padded(body, SMALL - 10), headers=headers).status_code == status
    bomb = gzip.compress(padded({**body, "name": "other"}, SMALL + 1))
    assert len(bomb) < 1024  # small on the wire, over the limit once inflated
    r = client.post(path, data=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 413, r.get_json()
    assert "inflated" in r.json["fields"]["body"]
    assert "JOBSYS_MAX_JSON_BODY_BYTES" in r.json["fields"]["body"]


def test_routes_that_carry_specs_keep_the_large_limit(ctx: Context) -> None:
    client = create_app(context=ctx).test_client()
    headers = {**bearer(ctx), "Content-Type": "application/json"}
    spec = docker_spec()
    spec["steps"][0]["env"] = {"BIG": "x" * (2 * SMALL)}  # type: ignore[index]
    r = client.post("/api/jobs", data=json.dumps(spec), headers=headers)
    assert r.status_code == 202, r.get_json()
    zipped = gzip.compress(json.dumps(spec).encode())
    r = client.post("/api/jobs", data=zipped, headers={**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 202, r.get_json()


def test_the_small_limit_is_a_setting(ctx: Context) -> None:
    from dataclasses import replace

    larger = replace(ctx, settings=replace(ctx.settings, max_json_body_bytes=2 * SMALL))
    client = create_app(context=larger).test_client()
    headers = {**bearer(ctx, "admin"), "Content-Type": "application/json"}
    body = padded({"name": "t", "role": "viewer"}, SMALL + 1)
    assert client.post("/api/tokens", data=body, headers=headers).status_code == 201


#: How gunicorn (and Werkzeug's own server) hand over a chunked body: no
#: Content-Length, and ``wsgi.input_terminated`` (the server ends the stream).
CHUNKED = {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}


def test_a_chunked_body_over_the_small_limit_is_413_not_cut_short(ctx: Context) -> None:
    """The review: a 2 MB chunked POST to /api/tokens was cut at the limit by
    Werkzeug's LimitedStream and answered 400 "malformed JSON"; it is 413 naming
    the setting, and one under the limit is read whole."""
    client = create_app(context=ctx).test_client()
    headers = {**bearer(ctx, "admin"), "Content-Type": "application/json"}
    body = {"name": "t", "role": "viewer"}
    r = client.post(
        "/api/tokens", data=padded(body, 2_000_000), headers=headers, environ_overrides=CHUNKED
    )
    assert r.status_code == 413, r.get_json()
    assert "JOBSYS_MAX_JSON_BODY_BYTES" in r.json["fields"]["body"]
    r = client.post(
        "/api/tokens", data=padded(body, SMALL + 1), headers=headers, environ_overrides=CHUNKED
    )
    assert r.status_code == 413, r.get_json()
    exact = padded(body, SMALL)
    r = client.post("/api/tokens", data=exact, headers=headers, environ_overrides=CHUNKED)
    assert r.status_code == 201, r.get_json()


def test_a_chunked_body_over_the_large_limit_is_413_not_cut_short(ctx: Context) -> None:
    from dataclasses import replace

    limit = 200_000
    smaller = replace(ctx, settings=replace(ctx.settings, max_payload_bytes=limit))
    client = create_app(context=smaller).test_client()
    headers = {**bearer(ctx), "Content-Type": "application/json"}
    spec = docker_spec()
    spec["steps"][0]["env"] = {"BIG": "x" * 100_000}  # type: ignore[index]
    r = client.post(
        "/api/jobs", data=padded(spec, limit + 1), headers=headers, environ_overrides=CHUNKED
    )
    assert r.status_code == 413, r.get_json()
    assert "JOBSYS_MAX_PAYLOAD_BYTES" in r.json["fields"]["body"]
    r = client.post(
        "/api/jobs", data=padded(spec, limit), headers=headers, environ_overrides=CHUNKED
    )
    assert r.status_code == 202, r.get_json()


def test_a_chunked_body_to_flower_is_413_not_forwarded_cut(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Flower proxy passes its body on unread: a cut one was forwarded as whole."""
    from webui import flower_proxy

    forwarded: list[bytes] = []

    class Upstream:
        def request(self, *_args: Any, content: bytes, **_kwargs: Any) -> Any:
            forwarded.append(content)
            raise AssertionError("a body over the limit reached Flower")

    monkeypatch.setattr(flower_proxy, "_client", lambda: Upstream())
    from dataclasses import replace

    smaller = replace(ctx, settings=replace(ctx.settings, max_payload_bytes=1000))
    client = create_app(context=smaller).test_client()
    r = client.post(
        "/flower/api/task/async-apply/x",
        data=b"x" * 5000,
        headers=bearer(ctx, "admin"),
        environ_overrides=CHUNKED,
    )
    assert r.status_code == 413, r.get_data()[:300]
    assert forwarded == []
