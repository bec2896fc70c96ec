"""``submit`` without ``submit_code`` (issue 14): Docker steps and functions by
import path, never pickles. A pickled function and pickled items both run code
on a worker (unpickling an item runs its ``__reduce__``), so both need
``submit_code``, through the API, the form or any other door.

No shipped role has ``submit`` without ``submit_code`` (developer has both,
operator neither), so this test adds one, ``submitter``, to the role table:
what it checks is the rule, which must hold for any role a later issue defines.
"""

from __future__ import annotations

import base64
import math

import cloudpickle
import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import ROLE_RIGHTS, SYSTEM, Right
from jobsys.context import Context
from tests.support.auth import bearer
from webui import create_app


def pickled(obj: object) -> dict[str, str]:
    return {"$pickle": base64.b64encode(cloudpickle.dumps(obj)).decode()}


def function_job(function: object, items: list[object]) -> dict[str, object]:
    return {"name": "map", "steps": [{"kind": "function", "function": function, "items": items}]}


class Point:
    """JSON cannot carry it, so the client sends it pickled."""

    def __init__(self, x: int) -> None:
        self.x = x


@pytest.fixture
def client(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setitem(ROLE_RIGHTS, "submitter", frozenset({Right.VIEW, Right.SUBMIT}))
    return create_app(context=ctx).test_client()


def jobs_stored(ctx: Context) -> int:
    return service.list_jobs(ctx, SYSTEM).total


def test_submit_without_submit_code_runs_no_pickles(client: FlaskClient, ctx: Context) -> None:
    headers = bearer(ctx, "submitter")

    refused = {
        "a pickled function": function_job(pickled(lambda x: x + 1), [1, 2]),
        "pickled items": function_job("math:sqrt", [pickled(Point(1)), 4]),
        "both": function_job(pickled(math.sqrt), [pickled(Point(2))]),
    }
    for what, spec in refused.items():
        answer = client.post("/api/jobs", json=spec, headers=headers)
        assert answer.status_code == 403, what
        assert answer.json["right"] == "submit_code", what
    assert jobs_stored(ctx) == 0  # refused before anything was written

    allowed = client.post("/api/jobs", json=function_job("math:sqrt", [1, 4, 9]), headers=headers)
    assert allowed.status_code == 202, allowed.json
    assert allowed.json["status"] == "queued" and jobs_stored(ctx) == 1


def test_a_developer_may_send_both(client: FlaskClient, ctx: Context) -> None:
    """The same requests are fine with ``submit_code``: the refusals above are about the right."""
    headers = bearer(ctx, "developer")
    for spec in (
        function_job(pickled(lambda x: x + 1), [1, 2]),
        function_job("math:sqrt", [pickled(Point(1))]),
    ):
        assert client.post("/api/jobs", json=spec, headers=headers).status_code == 202
