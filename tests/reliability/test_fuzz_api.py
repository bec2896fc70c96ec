"""Fuzzing the JSON API from its OpenAPI description (issue 8): schemathesis
generates valid and invalid requests for every operation in webui/openapi.yaml
and sends them to the app (WSGI, SQLite and a recording dispatcher) with an
admin token. No answer may be a server error, and every answer must have a
status, content type and body the description allows. The examples per
operation are bounded so the whole run stays near half a minute.

Generated path parameters are random, so half of them are swapped for things
that exist (a queued job, a cancelled one, the nightly schedule, the echo
template): the fuzzer then reaches the code behind the 404s too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from jobsys.service import waiting
from jobsys.store.models import Token
from tests.support.auth import bearer_of
from tests.support.examples import EXAMPLES
from tests.support.fixtures import make_context, make_settings
from webui import create_app
from webui.openapi import document

#: Generated requests per operation and generation mode (valid, then invalid).
MAX_EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
DOCKER = {"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}


@dataclass
class Target:
    app: Flask
    ctx: Context
    token: str
    token_id: int
    #: Real values for each path parameter, swapped in for half the generated ones.
    real: dict[str, list[Any]]

    def headers(self) -> dict[str, str]:
        # The fuzzer may revoke any token id it likes, ours included: un-revoke it.
        with self.ctx.sessions.begin() as session:
            session.execute(update(Token).where(Token.id == self.token_id).values(revoked_at=None))
        # identity: werkzeug's test transport hands gzip answers back still packed
        # (HTTP clients unpack them; tests/unit/test_compression.py covers gzip).
        return {**bearer_of(self.token), "Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    settings_ = make_settings(
        tmp_path_factory.mktemp("fuzz"), catalog_dir=str(EXAMPLES), max_payload_bytes=256 * 1024
    )
    ctx = make_context(settings_)
    service.reload_catalog(ctx, SYSTEM)
    issued = service.create_token(ctx, SYSTEM, name="fuzzer", role="admin")
    token_id = next(t.id for t in service.list_tokens(ctx, SYSTEM) if t.name == "fuzzer")
    queued = service.submit_job(ctx, SYSTEM, {"name": "queued", "steps": [DOCKER]})
    stopped = service.submit_job(ctx, SYSTEM, {"name": "stopped", "steps": [DOCKER]})
    service.cancel_job(ctx, SYSTEM, stopped.id)
    service.create_schedule(
        ctx,
        SYSTEM,
        {"name": "nightly", "cron": "0 3 * * *", "spec": {"name": "n", "steps": [DOCKER]}},
    )
    service.add_user(ctx, SYSTEM, name="ada", password="long enough pw", role="developer")
    service.set_secret(ctx, SYSTEM, "echo", "a-secret-value")
    real = {
        "job_id": [queued.id, stopped.id],
        "ref": ["nightly"],
        "name": ["echo", "squares", "ada"],
    }
    # A generated ``wait`` or ``timeout_s`` may be 60 s on a job that never ends:
    # waits are cut to a moment here (tests/integration/test_waiting.py covers them).
    real_wait = waiting._wait
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            waiting, "_wait", lambda c, p, ids, s, look: real_wait(c, p, ids, min(s, 0.01), look)
        )
        yield Target(create_app(context=ctx), ctx, issued.token, token_id, real)


def fuzzed_schema() -> Any:
    """The description as the app serves it, bounded to MAX_EXAMPLES per mode.
    Loaded from the document itself (no app is needed to collect the tests); the
    requests go to the module's app through its WSGI interface."""
    loaded = schemathesis.openapi.from_dict(document())
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        database="none",
    )
    # The event stream follows a job until it ends: it has its own tests (live events).
    return loaded.exclude(operation_id="jobEvents")


schema = fuzzed_schema()


def with_real_ids(case: Any, target: Target) -> None:
    """Swap about half the generated path parameters for ones that exist."""
    for name, value in (case.path_parameters or {}).items():
        choices = target.real.get(name)
        if not choices:
            continue
        pick = hashlib.sha256(repr(value).encode()).digest()[0]
        if pick % 2 == 0:
            case.path_parameters[name] = choices[pick % len(choices)]


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_answers_match_the_description(case: Any, target: Target) -> None:
    with_real_ids(case, target)
    response = case.call(headers=target.headers(), app=target.app)
    case.validate_response(response, checks=CHECKS)


def test_every_api_route_is_described_and_nothing_else(target: Target) -> None:
    """The description and the routes stay in step: a new route without its
    entry (or an entry for a route that went) fails here."""
    routes = {
        (method.lower(), _openapi_path(rule.rule))
        for rule in target.app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    described = {
        (method, path)
        for path, item in document()["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }
    assert described == routes


def test_the_description_is_served_without_a_token(target: Target) -> None:
    r = target.app.test_client().get("/api/openapi.json")
    assert r.status_code == 200
    assert r.json["openapi"].startswith("3.1") and "/api/jobs" in r.json["paths"]


def _openapi_path(rule: str) -> str:
    """``/api/tokens/<int:token_id>/revoke`` as OpenAPI writes it."""
    import re

    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)
