"""Flower behind the jobsys sign-in: a real Flower (``--url_prefix=flower``)
reached through the web app's ``/flower`` proxy, with rights per action; a
path that hides another route is refused (it once grew the worker pool for
an operator), and a revoke cancels its job as the caller."""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.context import Context
from jobsys.stack import flower_basic_auth
from tests.support.auth import new_token, sign_in, stack_bearer
from tests.support.examples import EXAMPLES
from tests.support.flower import BEHIND_PROXY, running_flower
from tests.support.live import LiveStack, wait_until
from webui import create_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxied(stack: LiveStack) -> Iterator[tuple[Flask, str]]:
    """One Flower per stack for the module (it takes a few seconds to start):
    the web app that proxies to it, and its own address. Each test makes its
    own client of the app, so no test sees another's session cookie."""
    basic_auth = flower_basic_auth(stack.settings)
    with running_flower(
        stack, BEHIND_PROXY, url_prefix="flower", FLOWER_BASIC_AUTH=basic_auth
    ) as direct:
        settings = replace(stack.settings, flower_port=urlsplit(direct).port)
        ctx = Context(
            settings=settings, sessions=stack.ctx.sessions, dispatcher=stack.ctx.dispatcher
        )
        yield create_app(context=ctx), direct


def test_flower_through_the_proxy_follows_roles(
    stack: LiveStack, proxied: tuple[Flask, str]
) -> None:
    app, direct = proxied
    client = app.test_client()
    assert httpx.get(f"{direct}/metrics", timeout=10).status_code == 401  # its own door is shut
    assert client.get("/flower/api/workers").status_code == 302  # to the sign-in page

    def workers() -> dict[str, object]:
        answer = client.get(
            "/flower/api/workers?refresh=1", headers=stack_bearer(stack, "viewer", everywhere=True)
        )
        assert answer.status_code == 200
        return answer.json

    found = wait_until(workers, 30, "Flower to list the worker")
    assert any(name.startswith(f"it-{stack.name}@") for name in found)
    metrics = client.get("/flower/metrics", headers=stack_bearer(stack, "viewer", everywhere=True))
    assert metrics.status_code == 200 and b"flower_worker_online" in metrics.data

    # Flower shows our tasks by job, step and chunk, not as opaque item blobs
    with stack.client() as c:
        job = c.map(abs, [-1, -2], chunk_size=1).wait(timeout=60)

    def shown() -> bool:
        tasks = client.get(
            "/flower/api/tasks?limit=200", headers=stack_bearer(stack, "viewer", everywhere=True)
        ).json
        return any(f"job={job.id}" in str(t.get("args")) for t in tasks.values())

    wait_until(shown, 30, "Flower to list the job's tasks by job id")

    # a task that is no jobsys job's: Flower's revoke, for an admin only
    revoke = "/flower/api/task/revoke/0f0f0f0f-0000-0000-0000-000000000000"
    assert (
        client.post(revoke, headers=stack_bearer(stack, "viewer", everywhere=True)).json["right"]
        == "cancel"
    )
    assert (
        client.post(revoke, headers=stack_bearer(stack, "operator", everywhere=True)).json["right"]
        == "admin"
    )
    answer = client.post(revoke, headers=stack_bearer(stack, "admin", everywhere=True))
    assert answer.status_code == 200 and "Revoked" in answer.json["message"]
    send = "/flower/api/task/send-task/jobsys.reap_orphans"
    denied = client.post(send, headers=stack_bearer(stack, "developer", everywhere=True))
    assert denied.status_code == 403 and denied.json["right"] == "admin"

    # a signed-in page session sees Flower's own pages
    sign_in(client, new_token(stack.ctx, "viewer", name="flower-viewer", everywhere=True))
    page = client.get("/flower/workers")
    assert page.status_code == 200 and b"Flower" in page.data
    # the tasks page asks for its rows by POST, from our own origin: Flower answers;
    # the same POST from a sibling site is refused before it leaves the web app
    rows = {"draw": "1", "start": "0", "length": "10", "order[0][column]": "0"}
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    answer = client.post("/flower/tasks/datatable", data=rows, headers=same)
    assert answer.status_code == 200 and answer.json["draw"] == 1, answer.data
    evil = {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.example.com"}
    assert client.post("/flower/tasks/datatable", data=rows, headers=evil).status_code == 403


def pool_size(stack: LiveStack, worker: str) -> int:
    """How many processes the worker's prefork pool has now, as it says itself."""
    app = stack.ctx.dispatcher.app  # type: ignore[attr-defined]
    stats = app.control.inspect(destination=[worker], timeout=5).stats() or {}
    return len(stats[worker]["pool"]["processes"])


def our_worker(stack: LiveStack) -> str:
    names = [w.name for w in stack.ctx.dispatcher.workers()]
    (name,) = [n for n in names if n.startswith(f"it-{stack.name}@")]
    return name


# A path refusal never reaches the database.
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_path_that_hides_another_route_never_reaches_worker_control(
    stack: LiveStack, proxied: tuple[Flask, str]
) -> None:
    """The reported hole: an operator's ``task/revoke/../../worker/pool/grow/...``
    grew the pool (httpx removed the dot segments after the right was decided)."""
    client = proxied[0].test_client()
    worker = our_worker(stack)
    before = pool_size(stack, worker)
    operator = stack_bearer(stack, "operator", everywhere=True)
    hidden = [
        f"/flower/api/task/revoke/../../worker/pool/grow/{worker}?n=1",
        f"/flower/api/task/revoke/%2e%2e/%2e%2e/worker/pool/grow/{worker}?n=1",
        f"/flower/api/task/revoke/%252e%252e/%252e%252e/worker/pool/grow/{worker}?n=1",
        f"/flower/api/task/revoke/..%2f..%2fworker%2fpool%2fgrow%2f{worker}?n=1",
        f"/flower/api/task/abort/../../worker/shutdown/{worker}",
        "/flower/api/task/revoke/../../task/send-task/jobsys.reap_orphans",
        "/flower/api/task/revoke/../../task/apply/jobsys.reap_orphans",
    ]
    for path in hidden:
        answer = client.post(path, headers=operator)
        assert answer.status_code == 400, (path, answer.data)
        assert "path" in answer.json["fields"]
    # the same through gunicorn, as `curl --path-as-is` sends it: the check reads
    # the raw request target gunicorn keeps, not the decoded path
    address = urlsplit(stack.url)
    for path in hidden[:3]:
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
        conn.request("POST", path, headers=operator)
        response = conn.getresponse()
        assert response.status == 400, (path, response.read())
        conn.close()
    assert pool_size(stack, worker) == before
    # the route itself, named plainly: an operator is refused, an admin grows the pool
    grow = f"/flower/api/worker/pool/grow/{worker}?n=1"
    denied = client.post(grow, headers=operator)
    assert denied.status_code == 403 and denied.json["right"] == "admin"
    admin = stack_bearer(stack, "admin", everywhere=True)
    assert client.post(grow, headers=admin).status_code == 200
    try:
        wait_until(lambda: pool_size(stack, worker) == before + 1, 30, "the pool to grow")
    finally:
        shrink = f"/flower/api/worker/pool/shrink/{worker}?n=1"
        assert client.post(shrink, headers=admin).status_code == 200
        wait_until(lambda: pool_size(stack, worker) == before, 30, "the pool to shrink back")


@pytest.fixture
def guarded_catalog(stack: LiveStack, tmp_path: Path) -> Iterator[str]:
    """The shipped catalog plus a template whose jobs only an admin may stop."""
    folder = tmp_path / "catalog"
    shutil.copytree(EXAMPLES, folder)
    (folder / "guarded-sleep").mkdir()
    (folder / "guarded-sleep" / "job.yaml").write_text(
        "steps: [{kind: function, function: 'time:sleep', items: [60], chunk_size: 1}]\n"
        "roles: {stop: [admin]}\n"
    )
    service.reload_catalog(stack.ctx, SYSTEM, folder)
    yield "guarded-sleep"
    service.reload_catalog(stack.ctx, SYSTEM, EXAMPLES)


def running_task(stack: LiveStack, job_id: str) -> str:
    def running() -> str | None:
        tasks = service.job_tasks(stack.ctx, SYSTEM, job_id)
        return next((t.id for t in tasks if t.state == "running"), None)

    task_id: str = wait_until(running, 30, f"a task of job {job_id} to run")
    return task_id


def cancellers(stack: LiveStack, job_id: str) -> list[str]:
    entries, _ = service.list_audit(stack.ctx, SYSTEM, action="job.cancel")
    return [e.actor for e in entries if e.target == job_id]


def test_a_revoke_through_the_proxy_is_the_jobs_cancel_as_the_caller(
    stack: LiveStack, proxied: tuple[Flask, str], guarded_catalog: str
) -> None:
    client = proxied[0].test_client()
    job = service.start_template(stack.ctx, Principal("otto", "operator"), guarded_catalog, {})
    task_id = running_task(stack, job.id)
    terminate = f"/flower/api/task/revoke/{task_id}?terminate=true"
    # the template lets only admins stop its jobs, through Flower as with the Cancel button
    denied = client.post(terminate, headers=stack_bearer(stack, "operator", everywhere=True))
    assert denied.status_code == 403
    assert "lets only the roles admin stop its jobs" in denied.json["message"]
    assert service.get_job(stack.ctx, SYSTEM, job.id).status == "running"
    started = time.monotonic()
    answer = client.post(terminate, headers=stack_bearer(stack, "admin", everywhere=True))
    assert answer.status_code == 200 and answer.json["job_id"] == job.id
    done = service.get_job(stack.ctx, SYSTEM, job.id)
    assert done.status == "cancelled"
    assert done.error == f"cancelled by test-admin: task {task_id} terminated through Flower"

    def chunk_ended() -> bool:
        tasks = service.job_tasks(stack.ctx, SYSTEM, job.id)
        return all(t.state != "running" for t in tasks)

    # the chunk's process was ended, long before its 60 s sleep
    wait_until(chunk_ended, 30, "the sleeping chunk to be ended")
    assert time.monotonic() - started < 45
    # the audit trail names the caller; Celery's revoke coming back adds no "system" entry
    time.sleep(1)
    assert cancellers(stack, job.id) == ["test-admin"]

    # a job with no narrowed template: an operator's revoke cancels it, as the operator
    with stack.client() as c:
        plain = c.map(time.sleep, [60], chunk_size=1)
    task_id = running_task(stack, plain.id)
    answer = client.post(
        f"/flower/api/task/revoke/{task_id}",
        headers=stack_bearer(stack, "operator", everywhere=True),
    )
    assert answer.status_code == 200
    assert service.get_job(stack.ctx, SYSTEM, plain.id).status == "cancelled"
    assert cancellers(stack, plain.id) == ["test-operator"]
