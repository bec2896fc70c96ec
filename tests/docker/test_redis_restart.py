"""Logs outlive a Redis restart: a stack on its own redis-server, which the
test stops and starts again (empty) after the job ended."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.exceptions import RedisError

from tests.docker.test_docker_steps import finished, step, submit
from tests.live import LiveStack, free_port, start_stack, wait_until
from tests.services import missing

pytestmark = [pytest.mark.integration, pytest.mark.docker]


class RedisServer:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            missing("redis-server", "apt install redis-server")
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except (RedisError, OSError):
            return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_stack(own_redis: RedisServer, tmp_path: Path) -> Iterator[LiveStack]:
    db = f"sqlite:///{tmp_path / 'jobsys.db'}"
    yield from start_stack("restart", db, own_redis.url, tmp_path)


def test_logs_survive_a_redis_restart(private_stack: LiveStack, own_redis: RedisServer) -> None:
    stack = private_stack
    job_id = submit(stack, step("for i in 1 2 3; do echo line $i; done; sleep 0.2; echo oops >&2"))
    assert finished(stack, job_id)["status"] == "completed"

    own_redis.stop()  # no persistence: every stream and key is gone
    own_redis.start()
    # (the worker may already have reconnected and declared its queues)
    assert (
        redis.Redis.from_url(own_redis.url).exists("jobsys:events", f"jobsys:events:{job_id}") == 0
    )

    with stack.http() as http:
        logs = http.get(f"/api/jobs/{job_id}/logs").json()["logs"]
        tail = http.get(f"/api/jobs/{job_id}/logs", params={"tail": 2}).json()["logs"]
    assert [(e["stream"], e["line"]) for e in logs] == [
        ("stdout", "line 1"),
        ("stdout", "line 2"),
        ("stdout", "line 3"),
        ("stderr", "oops"),
    ]
    assert [e["line"] for e in tail] == ["line 3", "oops"]
    # the live view ends at once with the stored status instead of waiting for ever
    with stack.client() as c:
        events = list(c.job(job_id).events())
    assert [e["data"]["status"] for e in events] == ["completed"]
    # and the stack goes on working on the restarted Redis
    again = submit(stack, step("echo again"))
    assert finished(stack, again)["status"] == "completed"
    assert httpx.get(f"{stack.url}/api/jobs/{again}/logs").status_code == 401
