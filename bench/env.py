"""The processes ``make bench`` runs and measures, all its own:

- a redis-server on a spare port: database 0 for the jobsys stack on SQLite,
  1 for the one on PostgreSQL, 3 for raw Celery;
- the jobsys stack laid out like ``make run`` (jobsys/stack.py): the web app
  under gunicorn (2 processes x 32 threads), one prefork worker for the
  ``python`` queue and one for ``docker``, each ``-c 2``; beat only while a
  schedule is measured;
- the raw Celery worker (``-Q raw -c 2 -P prefork``), up only while its side
  is measured, so the two never compete for the two slots' CPU.

Every child runs in its own session (a terminal's Ctrl-C reaches the bench
alone, which then stops them in order) and gets SIGTERM if the bench itself
dies (``PR_SET_PDEATHSIG``); ``Processes.stop_all`` sends SIGTERM to each
child's group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from jobsys import Client
from jobsys.config import Settings
from jobsys.stack import child_env, web_command
from jobsys.testing import LiveStack, free_port, fresh_database, wait_until

STOP_GRACE_S = 15.0
SECRET = "bench-secret-0123456789-0123456789"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    # Not Linux: Ctrl-C and failures still stop the children.
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    """The bench's children by name, with their logs in ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.procs[name] = proc
        return proc

    def check(self, name: str) -> None:
        code = self.procs[name].poll()
        if code is not None:
            raise RuntimeError(f"{name} exited with code {code}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, *names: str) -> None:
        live = [self.procs.pop(n) for n in names if n in self.procs]
        live = [p for p in live if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        """Everything at once, then Redis: workers shutting down warm still talk to it."""
        self.stop(*[n for n in reversed(list(self.procs)) if n != "redis"])
        self.stop("redis")


def start_redis(procs: Processes, workdir: Path) -> str:
    """A private redis-server on a spare loopback port; its URL without a database."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not on PATH (apt install redis-server)")
    port = free_port()
    procs.spawn(
        "redis",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        env=dict(os.environ),
        cwd=workdir,
    )
    url = f"redis://127.0.0.1:{port}"

    def answers() -> bool:
        procs.check("redis")
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())

    wait_until(answers, 15, "the bench's redis-server")
    return url


class JobsysStack:
    """One jobsys deployment: its settings, processes and a token."""

    def __init__(
        self,
        name: str,
        procs: Processes,
        database_url: str,
        redis_url: str,
        tmp: Path,
        sandbox: str = "on",
    ) -> None:
        self.name, self.procs = name, procs
        data = tmp / name
        data.mkdir(parents=True, exist_ok=True)
        self.settings = Settings.from_env(
            {},
            redis_url=redis_url,
            database_url=database_url,
            secret_key=SECRET,
            data_dir=str(data),
            docker_images=("jobsys/*",),
            sandbox=sandbox,
        )
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.live: LiveStack | None = None
        self.queues: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    def proc_name(self, part: str) -> str:
        return f"{self.name}-{part}"

    def start(self, queues: tuple[str, ...] = ("python", "docker")) -> None:
        """Web app and one worker per queue, on an empty database and Redis database."""
        self.launch(queues)
        self.ready()

    def launch(self, queues: tuple[str, ...] = ("python", "docker")) -> None:
        """Start the processes without waiting for them (``ready`` does), so
        two stacks can come up side by side."""
        from jobsys.runtime import build_context

        redis.Redis.from_url(self.settings.redis_url).flushdb()
        fresh_database(self.settings.database_url)
        self.queues = queues
        celery = [sys.executable, "-m", "celery", "-A", "jobsys.celery_app"]
        slots = {
            "python": self.settings.python_concurrency,
            "docker": self.settings.docker_concurrency,
        }
        self.procs.spawn(
            self.proc_name("web"), web_command(f"127.0.0.1:{self.port}"), self.env, self.data
        )
        for queue in queues:
            self.procs.spawn(
                self.proc_name(f"worker-{queue}"),
                [
                    *celery,
                    "worker",
                    "-Q",
                    queue,
                    "-n",
                    f"bench-{self.name}-{queue}@%h",
                    "-c",
                    str(slots[queue]),
                    "-P",
                    "prefork",
                    "-l",
                    "INFO",
                ],
                self.env,
                self.data,
            )
        self.live = LiveStack(
            self.name, self.settings, build_context(self.settings), self.url, self.data
        )

    def ready(self) -> None:
        assert self.live is not None
        self._wait_http()
        dispatcher = self.live.ctx.dispatcher

        def workers_up() -> bool:
            for queue in self.queues:
                self.procs.check(self.proc_name(f"worker-{queue}"))
            names = {w.name.partition("@")[0] for w in dispatcher.workers()}
            return all(f"bench-{self.name}-{q}" in names for q in self.queues)

        wait_until(workers_up, 90, f"the {self.name} workers")

    def _wait_http(self) -> None:
        def up() -> bool:
            self.procs.check(self.proc_name("web"))
            return httpx.get(f"{self.url}/api/stats", timeout=2).status_code == 401

        wait_until(up, 60, f"the {self.name} web app")

    @contextlib.contextmanager
    def beat(self) -> Iterator[None]:
        """celery beat on the jobsys scheduler, only while a schedule is measured."""
        name = self.proc_name("beat")
        self.procs.spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "jobsys.celery_app",
                "beat",
                "-l",
                "INFO",
                "-S",
                "jobsys.scheduler:DatabaseScheduler",
            ],
            self.env,
            self.data,
        )
        try:
            yield
        finally:
            self.procs.stop(name)

    def pids(self, part: str) -> int:
        return self.procs.procs[self.proc_name(part)].pid

    def token(self, role: str = "developer") -> str:
        assert self.live is not None
        return self.live.token(role)

    def client(self, role: str = "developer") -> Client:
        return Client(self.url, token=self.token(role), timeout=120)

    def http(self, role: str = "developer") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {self.token(role)}"}
        )

    def stop(self) -> None:
        self.procs.stop(*[n for n in list(self.procs.procs) if n.startswith(f"{self.name}-")])


class RawWorker:
    """The raw Celery worker: ``up()`` before raw Celery is measured,
    ``idle()`` after. With ``keep`` (``make bench-quick``) it stays up but
    idle between, which saves its start-up time."""

    NAME = "raw-worker"

    def __init__(self, procs: Processes, redis_url: str, tmp: Path, keep: bool = False) -> None:
        from bench import raw_app

        self.procs, self.url, self.tmp, self.keep = procs, redis_url, tmp, keep
        self.app = raw_app.configure(redis_url)

    @property
    def running(self) -> bool:
        proc = self.procs.procs.get(self.NAME)
        return proc is not None and proc.poll() is None

    def up(self) -> None:
        self.launch()
        self.ready()

    def launch(self) -> None:
        """Start the worker without waiting for it (``ready`` does)."""
        if self.running:
            return
        self.procs.spawn(
            self.NAME,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.raw_app",
                "worker",
                "-Q",
                "raw",
                "-n",
                "bench-raw@%h",
                "-c",
                "2",
                "-P",
                "prefork",
                "-l",
                "WARNING",
            ],
            {**os.environ, "BENCH_RAW_REDIS_URL": self.url, "PYTHONUNBUFFERED": "1"},
            Path.cwd(),
        )

    def ready(self) -> None:
        def answers() -> bool:
            self.procs.check(self.NAME)
            replies = self.app.control.ping(timeout=0.5) or []
            return any(name.startswith("bench-raw@") for r in replies for name in r)

        wait_until(answers, 90, "the raw Celery worker")

    def idle(self) -> None:
        if not self.keep:
            self.procs.stop(self.NAME)

    @contextlib.contextmanager
    def measuring(self) -> Iterator[Any]:
        self.up()
        try:
            yield self.app
        finally:
            self.idle()


def docker_image_ready(image: str, repo: Path) -> str | None:
    """None when ``image`` is there (made like the tests get it, by
    scripts/ensure-docker.sh); else why the Docker rows are skipped."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"

    def present() -> bool:
        return (
            subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
            == 0
        )

    if present():
        return None
    script = repo / "scripts" / "ensure-docker.sh"
    if os.geteuid() == 0 and script.exists():
        subprocess.run([str(script)], capture_output=True, timeout=600)
        if present():
            return None
    return f"{image} is missing and could not be built (run scripts/ensure-docker.sh as root)"


def postgres_url() -> tuple[str | None, str]:
    """The PostgreSQL database of the PostgreSQL row: ``JOBSYS_BENCH_POSTGRES_URL``,
    else database ``jobsys_bench`` on 127.0.0.1:5432 as user postgres, created
    when missing. (None, why) when no server answers."""
    given = os.environ.get("JOBSYS_BENCH_POSTGRES_URL")
    url = given or "postgresql+psycopg://postgres@127.0.0.1:5432/jobsys_bench"
    try:
        import psycopg

        if not given:
            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = 'jobsys_bench'"
                ).fetchone()
                if not exists:
                    conn.execute("CREATE DATABASE jobsys_bench")
        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3):
            pass
    except Exception as exc:  # any failure means: no PostgreSQL row, said why
        return None, f"PostgreSQL not reachable at {url.split('@')[-1]}: {exc}".splitlines()[0]
    return url, ""
