"""The local stack behind ``make run``: web app, one worker per queue, beat and
Flower as child processes, plus a private redis-server when none answers
(loopback only, with a password kept in the data folder).

Ctrl-C (or SIGTERM) stops every child: SIGTERM first so Celery shuts down
warm, SIGKILL for whatever is still there after the grace period.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from redis.exceptions import RedisError

from jobsys.config import Settings
from jobsys.datadir import FILE_MODE, private_file, private_folder, tighten
from jobsys.errors import ConfigError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STOP_GRACE_S = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (RedisError, OSError):
        return False


def local_redis(settings: Settings) -> tuple[Settings, Child | None]:
    """The settings the stack runs with, and the redis-server to start if it is ours.

    None when a Redis already answers at ``JOBSYS_REDIS_URL`` (it is someone
    else's and configured by them). Otherwise jobsys starts one on that
    loopback address, and it is never open: it asks for a password that lives
    only in the data folder (``redis.password``, 0600; kept across restarts) and
    in the returned settings' URL, which every child gets in its environment
    (never on a command line, which every user can read in ``ps``). Without it
    any local user or any web page able to reach 127.0.0.1 could read job
    specs and results from Redis, or send tasks that the workers run.
    """
    if redis_answers(settings.redis_url):
        return settings, None
    conn = redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs
    host, port = str(conn.get("host", "")), int(conn.get("port", 6379))
    if host not in LOCAL_HOSTS:
        raise ConfigError(
            f"nothing answers at JOBSYS_REDIS_URL={settings.redis_url}; start that Redis "
            "or point JOBSYS_REDIS_URL at one that runs"
        )
    data = private_folder(settings.data_path.resolve())
    password = str(conn.get("password") or "") or redis_password(data)
    ours = replace(settings, redis_url=url_with_password(settings.redis_url, password))
    if redis_answers(ours.redis_url):  # the one an earlier run started is still up
        return ours, None
    server = shutil.which("redis-server")
    if server is None:
        raise ConfigError(
            "no Redis answers at 127.0.0.1 and no redis-server is on PATH: install one "
            "(Debian/Ubuntu: apt install redis-server; macOS: brew install redis) "
            "or set JOBSYS_REDIS_URL"
        )
    config = write_private(
        data / "redis.conf",
        "# Written by `jobsys run` at each start; edits are lost.\n"
        f"bind {host}\nport {port}\nprotected-mode yes\nrequirepass {password}\n"
        f'save ""\nappendonly no\ndir "{data}"\n',
    )
    return ours, Child("redis", [server, str(config)])


def redis_password(data: Path) -> str:
    """The local redis-server's password: read from the data folder, made on first use."""
    path = data / "redis.password"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the first byte."""
    private_file(path)
    os.chmod(path, FILE_MODE)
    path.write_text(text)
    return path


def url_with_password(url: str, password: str) -> str:
    """``url`` with ``password`` as the default user's password (any user name dropped)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    netloc = f":{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redacted(url: str) -> str:
    """A Redis URL fit to print: the password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


#: Each open live view (server-sent events) holds one thread while it follows a job.
WEB_THREADS = 32


def web_command(bind: str, app: str = "webui.wsgi:app") -> list[str]:
    """gunicorn serving the web app and API (``app``: another WSGI app under the
    same server, for the bench's floor): threads, so live views do not starve
    page requests."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        str(WEB_THREADS),
        "--access-logfile",
        "-",
        app,
    ]


def stack_children(settings: Settings) -> list[Child]:
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "jobsys.celery_app"]
    return [
        Child("web", web_command(f"{settings.web_host}:{settings.web_port}")),
        # One worker per queue, so each queue's concurrency is its own limit.
        *(
            Child(
                f"worker-{queue}",
                [
                    *celery,
                    "worker",
                    "-Q",
                    queue,
                    "-n",
                    f"{queue}@%h",
                    *("-c", str(slots), "-l", "INFO"),
                ],
            )
            for queue, slots in (
                ("python", settings.python_concurrency),
                ("docker", settings.docker_concurrency),
            )
        ),
        Child("beat", [*celery, "beat", "-l", "INFO", "-S", "jobsys.scheduler:DatabaseScheduler"]),
        Child(
            "flower",
            [
                py,
                "-m",
                "jobsys.flower",
                f"--address={settings.web_host}",
                f"--port={settings.flower_port}",
                "--url_prefix=flower",
            ],
            env={"FLOWER_BASIC_AUTH": flower_basic_auth(settings)},
        ),
    ]


def flower_basic_auth(settings: Settings) -> str:
    """``user:password`` for Flower, derived from the secret key so it is stable.

    Flower's API (revoke, terminate, rate limits) answers only with some
    authentication, and its unauthenticated mode opens it to every web page
    via CORS; basic auth is the safe local default. Honours FLOWER_BASIC_AUTH.
    """
    given = os.environ.get("FLOWER_BASIC_AUTH")
    if given:
        return given
    mac = hmac.new(settings.secret_key.encode(), b"jobsys flower basic auth", hashlib.sha256)
    return f"jobsys:{mac.hexdigest()[:24]}"


def child_env(settings: Settings) -> dict[str, str]:
    """Children get the resolved settings so they share one database, broker and key."""
    resolved = replace(settings, data_dir=str(settings.data_path.resolve()))
    return {**os.environ, **resolved.to_env(), "PYTHONUNBUFFERED": "1"}


def _pump(name: str, stream: IO[bytes]) -> None:
    prefix = f"{name:>13} | ".encode()
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.buffer.flush()


class Stack:
    def __init__(self, children: list[Child], env: dict[str, str]) -> None:
        self.children = children
        self.env = env
        self.stopping = False

    def start(self, child: Child) -> None:
        # Own session: the terminal's Ctrl-C reaches us only, and we stop children in order.
        child.process = subprocess.Popen(
            child.argv,
            env={**self.env, **child.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert child.process.stdout is not None
        threading.Thread(target=_pump, args=(child.name, child.process.stdout), daemon=True).start()

    def stop(self) -> None:
        self.stopping = True
        live = [c for c in reversed(self.children) if c.process and c.process.poll() is None]
        for child in live:
            assert child.process is not None
            os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in live:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()

    def watch(self) -> int:
        """Wait until a signal or a child's death; then stop everything."""
        while not self.stopping:
            for child in self.children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    print(
                        f"jobsys: {child.name} exited with code {code}; stopping the stack",
                        file=sys.stderr,
                    )
                    self.stop()
                    return 1
            time.sleep(0.5)
        return 0


def wait_for_redis(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise ConfigError(f"the redis-server we started does not answer at {redacted(url)}")
        time.sleep(0.1)


def run_stack(settings: Settings, banner: str) -> int:
    settings, redis = local_redis(settings)
    env = child_env(settings)
    children = stack_children(settings)
    stack = Stack(([redis] if redis else []) + children, env)

    def _on_signal(signum: int, _frame: object) -> None:
        if not stack.stopping:
            print(f"\njobsys: got signal {signum}, stopping...", file=sys.stderr)
            stack.stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if redis is None and urlsplit(settings.redis_url).password is None:
        print(
            f"jobsys: warning: the Redis at {settings.redis_url} asks for no password; anyone "
            "who can reach it can read jobs and send tasks the workers run (set requirepass "
            "and put the password in JOBSYS_REDIS_URL)",
            file=sys.stderr,
        )
    if redis:
        print(
            f"jobsys: starting redis-server at {redacted(settings.redis_url)}, on loopback only, "
            f"with the password in {settings.data_path.resolve() / 'redis.password'}",
            file=sys.stderr,
        )
        stack.start(redis)
        wait_for_redis(settings.redis_url)
    for child in children:
        stack.start(child)
    print(banner, flush=True)
    return stack.watch()


def data_dir(settings: Settings) -> Path:
    """The data folder, made 0700, with what is in it tightened (and said so)."""
    path = private_folder(settings.data_path.resolve())
    for note in tighten(settings):
        print(f"jobsys: {note} (the data folder is for this user only)", file=sys.stderr)
    return path
