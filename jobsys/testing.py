"""A disposable live jobsys stack: real Redis, a real database, a real Celery
worker process and the web app under gunicorn on a free port.

jobsys's own integration tests and benchmarks run on it, and so can a user's
tests of code that submits jobs (as ``celery.contrib.testing`` starts a worker
for theirs). It needs the services themselves: a missing one raises
``ServiceMissing`` saying how to get it, which a test runner can turn into a
skip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.exceptions import RedisError

from jobsys import Client, service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.runtime import build_context
from jobsys.service.records import JobInfo
from jobsys.stack import child_env, web_command
from jobsys.store.models import Base

SECRET = "integration-test-secret-0123456789"


class ServiceMissing(RuntimeError):
    """A service the stack needs (redis-server) is not on this machine."""

    def __init__(self, what: str, how: str) -> None:
        super().__init__(f"{what} is not available: {how}")
        self.what, self.how = what, how


def containers_of(job_id: str) -> list[str]:
    """The ids of the Docker containers labelled with this job, running or not."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=jobsys.job={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def fresh_database(url: str) -> None:
    """Drop every jobsys table and the migration stamp, so the first process to
    start builds the newest schema (a stamp left behind from an older revision
    would send the next start to migrate tables that are already there)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing may not be up yet
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")


@dataclass
class LiveStack:
    name: str
    settings: Settings
    ctx: Context
    url: str
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    def spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = proc
        return proc

    def unpublished_job(self, spec: dict[str, Any]) -> JobInfo:
        """Submit a job while "the broker is down": stored, never sent, so a
        test can look at or tamper with it before publishing it itself."""
        outbox = Context(
            settings=self.settings,
            sessions=self.ctx.sessions,
            dispatcher=MemoryDispatcher(down=True),
        )
        return service.submit_job(outbox, SYSTEM, spec)

    def sweep_until_sent(self, job_id: str, timeout: float = 15) -> None:
        """Run the outbox sweep until this job has left ``queued`` (other tests'
        jobs may be swept first, and each step waits out the grace period)."""

        def sent() -> bool:
            service.sweep_outbox(self.ctx)
            return service.get_job(self.ctx, SYSTEM, job_id).status != "queued"

        wait_until(sent, timeout, f"the outbox sweep to send job {job_id}")

    def token(self, role: str = "developer", *, everywhere: bool = False) -> str:
        """A token of ``role`` in the default project, or a global one (``everywhere``:
        what Flower, which shows every project's tasks, asks for)."""
        key = f"{role} global" if everywhere else role
        if key not in self.tokens:
            self.tokens[key] = service.create_token(
                self.ctx, SYSTEM, name=f"test-{role}", role=role, global_token=everywhere
            ).token
        return self.tokens[key]

    def client(self, role: str = "developer") -> Client:
        return Client(self.url, token=self.token(role))

    def http(self, role: str = "developer") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token(role)}"}
        )

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def start_stack(
    name: str, database_url: str, redis_url: str, tmp: Path, **overrides: Any
) -> Iterator[LiveStack]:
    """A worker and the web app on this database and Redis; ``overrides`` are
    Settings fields for every process (e.g. shorter TTLs for a soak)."""
    redis.Redis.from_url(redis_url).flushdb()
    port = free_port()
    settings = Settings.from_env(
        {},
        **{
            # Where browsers reach it (an identity provider sends them back there).
            "public_url": f"http://127.0.0.1:{port}",
            "redis_url": redis_url,
            "database_url": database_url,
            "secret_key": SECRET,
            "data_dir": str(tmp),
            "docker_images": ("jobsys/*",),
            "outbox_grace_s": 0.5,
            **overrides,
        },
    )
    fresh_database(database_url)
    stack = LiveStack(
        name=name,
        settings=settings,
        ctx=build_context(settings),
        url=f"http://127.0.0.1:{port}",
        log_dir=tmp,
    )
    py = sys.executable
    try:
        stack.spawn(
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "jobsys.celery_app",
                "worker",
                "-Q",
                "python,docker",
                "-c",
                "4",
                "-n",
                f"it-{name}@%h",
                "-l",
                "INFO",
            ],
        )
        stack.spawn("web", web_command(f"127.0.0.1:{port}"))
        wait_until(
            lambda: any(w.name.startswith(f"it-{name}@") for w in stack.ctx.dispatcher.workers()),
            60,
            "the worker",
        )
        wait_until(
            lambda: httpx.get(f"{stack.url}/api/stats").status_code == 401, 30, "the web app"
        )
        yield stack
    finally:
        stack.stop()
        if os.environ.get("JOBSYS_TEST_SHOW_LOGS"):
            for proc_name in stack.processes:
                print(f"---- {proc_name} ----\n{stack.log(proc_name)[-5000:]}")


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
            raise ServiceMissing("redis-server", "apt install redis-server")
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
