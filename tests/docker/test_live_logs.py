"""Live logs of Docker steps: lines reach the client, the CLI and SSE readers
while the container runs, resume after a dropped connection, and outlive the
Redis stream."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from jobsys.broker.events import job_stream
from tests.support.docker import finished, step, submit
from tests.support.live import LiveStack

pytestmark = [pytest.mark.integration, pytest.mark.docker]

SCRIPT = "for i in 1 2 3 4 5; do echo line $i; sleep 0.4; done; echo done >&2"
EXPECTED = [("stdout", f"line {i}") for i in range(1, 6)] + [("stderr", "done")]


def test_client_follows_lines_while_the_container_runs(stack: LiveStack) -> None:
    job_id = submit(stack, step(SCRIPT))
    seen: list[tuple[str, str]] = []
    with stack.client() as c:
        for entry in c.job(job_id).logs(follow=True):
            if not seen:
                status_at_first_line = c.job(job_id).status
            seen.append((entry["stream"], entry["line"]))
        assert c.job(job_id).status == "completed"
    assert status_at_first_line == "running"
    assert seen == EXPECTED
    # the stored copy is the same, for readers after the job
    with stack.http() as http:
        stored = http.get(f"/api/jobs/{job_id}/logs").json()["logs"]
    assert [(e["stream"], e["line"]) for e in stored] == EXPECTED


def test_cli_follow_prints_lines_as_they_come(stack: LiveStack) -> None:
    # The container waits after its lines, so "as they come" does not depend on
    # how fast the CLI starts; cancelling it then ends the follow.
    job_id = submit(stack, step("echo one; echo two >&2; sleep 60", stop_grace_s=1))
    env = {**stack.env, "JOBSYS_URL": stack.url, "JOBSYS_TOKEN": stack.token("operator")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobsys.cli", "logs", job_id, "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "one\n"
    assert proc.stderr.readline() == "two\n"
    with stack.client("operator") as c:
        assert c.job(job_id).status == "running"
        c.cancel(job_id)
    out, err = proc.communicate(timeout=60)
    # the follow ends with the job: the worker's own closing note comes later
    # and is in the stored logs only
    assert proc.returncode == 0, err
    assert (out, err) == ("", "")


def test_reconnect_resumes_after_the_last_event_seen(stack: LiveStack) -> None:
    job_id = submit(stack, step(SCRIPT))
    with stack.client() as c:
        job = c.job(job_id)
        everything = list(job.events())
        assert everything[-1]["event"] == "status"
        assert everything[-1]["data"]["status"] == "completed"
        lines = [e for e in everything if e["event"] == "log"]
        assert [(e["data"]["stream"], e["data"]["line"]) for e in lines] == EXPECTED
        cut = everything.index(lines[2])
        assert list(job.events(after=everything[cut]["id"])) == everything[cut + 1 :]


# The stream is Redis's; the stored lines are read by the same query on both.
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
def test_logs_outlive_the_stream(stack: LiveStack) -> None:
    job_id = submit(stack, step(SCRIPT))
    assert finished(stack, job_id)["status"] == "completed"
    # as after a Redis restart or trimming: the live copy is gone
    assert redis.Redis.from_url(stack.settings.redis_url).delete(job_stream(job_id)) == 1
    with stack.http() as http:
        tail = http.get(f"/api/jobs/{job_id}/logs", params={"tail": 2}).json()["logs"]
    assert [e["line"] for e in tail] == ["line 5", "done"]
    with stack.client() as c:
        (last,) = list(c.job(job_id).events())  # ends at once, from the database
        assert last["data"]["status"] == "completed"
        assert list(c.job(job_id).logs(follow=True)) == []
