"""Flower behind the jobsys sign-in: a real Flower (``--url_prefix=flower``)
reached through the web app's ``/flower`` proxy, with rights per action."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from jobsys.stack import flower_basic_auth
from tests.live import LiveStack, free_port, wait_until
from webui import create_app

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(stack: LiveStack) -> Iterator[tuple[FlaskClient, str]]:
    port = free_port()
    name = f"flower-proxied-{port}"
    proc = stack.spawn(
        name,
        [
            sys.executable,
            "-m",
            "jobsys.flower",
            "--address=127.0.0.1",
            f"--port={port}",
            "--url_prefix=flower",
        ],
        FLOWER_BASIC_AUTH=flower_basic_auth(stack.settings),
    )
    direct = f"http://127.0.0.1:{port}/flower"
    wait_until(
        lambda: httpx.get(f"{direct}/healthcheck", timeout=2).status_code == 200, 60, "Flower"
    )
    settings = replace(stack.settings, flower_port=port)
    ctx = Context(settings=settings, sessions=stack.ctx.sessions, dispatcher=stack.ctx.dispatcher)
    yield create_app(context=ctx).test_client(), direct
    proc.terminate()
    proc.wait(timeout=15)
    del stack.processes[name]


def bearer(stack: LiveStack, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(role)}"}


def test_flower_through_the_proxy_follows_roles(
    stack: LiveStack, proxied: tuple[FlaskClient, str]
) -> None:
    client, direct = proxied
    assert httpx.get(f"{direct}/metrics", timeout=10).status_code == 401  # its own door is shut
    assert client.get("/flower/api/workers").status_code == 302  # to the sign-in page

    def workers() -> dict[str, object]:
        answer = client.get("/flower/api/workers?refresh=1", headers=bearer(stack, "viewer"))
        assert answer.status_code == 200
        return answer.json

    found = wait_until(workers, 30, "Flower to list the worker")
    assert any(name.startswith(f"it-{stack.name}@") for name in found)
    metrics = client.get("/flower/metrics", headers=bearer(stack, "viewer"))
    assert metrics.status_code == 200 and b"flower_worker_online" in metrics.data

    # Flower shows our tasks by job, step and chunk, not as opaque item blobs
    with stack.client() as c:
        job = c.map(abs, [-1, -2], chunk_size=1).wait(timeout=60)

    def shown() -> bool:
        tasks = client.get("/flower/api/tasks?limit=200", headers=bearer(stack, "viewer")).json
        return any(f"job={job.id}" in str(t.get("args")) for t in tasks.values())

    wait_until(shown, 30, "Flower to list the job's tasks by job id")

    revoke = "/flower/api/task/revoke/0f0f0f0f-0000-0000-0000-000000000000"
    assert client.post(revoke, headers=bearer(stack, "viewer")).status_code == 403
    assert client.post(revoke, headers=bearer(stack, "operator")).status_code == 200
    send = "/flower/api/task/send-task/jobsys.reap_orphans"
    denied = client.post(send, headers=bearer(stack, "developer"))
    assert denied.status_code == 403 and denied.json["right"] == "admin"

    # a signed-in page session sees Flower's own pages
    token = service.create_token(stack.ctx, SYSTEM, name="flower-viewer", role="viewer").token
    with client.session_transaction() as session:
        session["token"] = token
    page = client.get("/flower/workers")
    assert page.status_code == 200 and b"Flower" in page.data
