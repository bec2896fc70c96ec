"""Revoking a jobsys task from Flower (its HTTP API, as its Terminate button
does) cancels the job and leaves no container behind; through the web app's
/flower proxy it is the job's Cancel, as the caller."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth import stack_bearer
from tests.support.docker import containers_of, finished, step, submit
from tests.support.flower import JOBSYS_CLI, running_flower
from tests.support.live import LiveStack, wait_until
from webui import create_app

pytestmark = [pytest.mark.integration, pytest.mark.docker]

AUTH = ("ops", "flower-test-password")


@pytest.fixture
def flower(stack: LiveStack) -> Iterator[str]:
    with running_flower(stack, JOBSYS_CLI, FLOWER_BASIC_AUTH=":".join(AUTH)) as url:
        yield url


def revoke_in_flower(url: str, task_id: str, *, terminate: bool) -> None:
    """As Flower's Terminate (or, without ``terminate``, Revoke) button does."""
    r = httpx.post(
        f"{url}/api/task/revoke/{task_id}",
        params={"terminate": str(terminate).lower()},
        auth=AUTH,
        timeout=10,
    )
    assert r.status_code == 200, r.text


def test_flower_api_and_metrics_need_the_credentials(flower: str) -> None:
    assert httpx.post(f"{flower}/api/task/revoke/x", timeout=10).status_code == 401
    assert httpx.get(f"{flower}/metrics", timeout=10).status_code == 401
    metrics = httpx.get(f"{flower}/metrics", auth=AUTH, timeout=10)
    assert metrics.status_code == 200 and "flower_events_total" in metrics.text


def test_terminate_from_flower_cancels_the_job_and_removes_its_container(
    stack: LiveStack, flower: str
) -> None:
    job_id = submit(stack, step("echo up; sleep 60"), step("echo never"))
    wait_until(lambda: containers_of(job_id), 30, "the container to start")
    with stack.http() as http:
        (task,) = http.get(f"/api/jobs/{job_id}/tasks").json()["tasks"]
    started = time.monotonic()
    revoke_in_flower(flower, task["id"], terminate=True)
    job = finished(stack, job_id, timeout=30)
    assert job["status"] == "cancelled"
    assert job["error"] == f"cancelled: task {task['id']} was terminated in Celery"
    assert [s["status"] for s in job["steps"]] == ["cancelled", "cancelled"]
    # the killed worker child could not stop it: the reaper, sent at once, does
    wait_until(lambda: not containers_of(job_id), 30, "the container to go")
    assert time.monotonic() - started < 30


def slow(x: int) -> int:
    time.sleep(1)
    return x


def test_revoking_a_chunk_from_flower_cancels_the_function_job(
    stack: LiveStack, flower: str
) -> None:
    with stack.client() as c:
        job = c.map(slow, range(12), chunk_size=1)
        wait_until(
            lambda: (
                any(t["state"] == "pending" for t in job.tasks())
                and any(t["state"] == "running" for t in job.tasks())
            ),
            30,
            "chunks to run",
        )
        # the last chunk: still in the queue, not yet prefetched by the worker
        pending = max((t for t in job.tasks() if t["state"] == "pending"), key=lambda t: t["chunk"])
        # a plain revoke: the worker drops the chunk when it receives it
        revoke_in_flower(flower, pending["id"], terminate=False)
        done = job.wait(timeout=60)
        assert done.status == "cancelled"
        assert done.error == f"cancelled: task {pending['id']} was revoked in Celery"


# Flower and the proxy do not touch the database; the cancel is the service's.
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_terminate_through_the_proxy_cancels_the_docker_job_as_the_caller(
    stack: LiveStack,
) -> None:
    """A Docker step's Celery task id finds its job; the proxy cancels it as the
    operator who clicked (no Flower is needed: a jobsys task's revoke never goes
    there), and the cancel ends the running container."""
    job_id = submit(stack, step("echo up; sleep 60"), step("echo never"))
    wait_until(lambda: containers_of(job_id), 30, "the container to start")
    with stack.http() as http:
        (task,) = http.get(f"/api/jobs/{job_id}/tasks").json()["tasks"]
    client = create_app(context=stack.ctx).test_client()
    answer = client.post(
        f"/flower/api/task/revoke/{task['id']}",
        data={"terminate": "true"},  # as Flower's Terminate button posts it
        headers=stack_bearer(stack, "operator", everywhere=True),
    )
    assert answer.status_code == 200 and answer.json["job_id"] == job_id
    job = finished(stack, job_id, timeout=30)
    assert job["status"] == "cancelled"
    why = f"cancelled by test-operator: task {task['id']} terminated through Flower"
    assert job["error"] == why
    assert [s["status"] for s in job["steps"]] == ["cancelled", "cancelled"]
    wait_until(lambda: not containers_of(job_id), 30, "the container to go")
