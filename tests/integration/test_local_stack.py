"""What ``make run`` starts, in a data folder of its own with no Redis answering
(issue 14, item 15): the redis-server it starts refuses commands without the
password, every child gets the password in its environment (and nobody's
command line shows it), the folder and its files end up for this user only,
and Ctrl-C stops every process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from tests.support.auth import bearer_of
from tests.support.live import free_port, wait_until
from tests.support.services import missing

JOBSYS = Path(sys.executable).with_name("jobsys")
CATALOG = Path(__file__).parents[2] / "jobs"


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue  # it ended while we looked
    return {p: cmd.decode(errors="replace") for p, cmd in found.items()}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def raw_ping(port: int) -> bytes:
    """What Redis answers a bare ``PING`` from a client that sent no password."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(200)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_make_run_starts_a_password_redis_and_stops_everything(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        missing("redis-server", "apt install redis-server")
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)  # as an older jobsys, or a loose umask, left them
    (data / "secret.key").write_text("an-older-local-secret-0123456789")
    (data / "admin.token").write_text("jst_0123456789ab.old\n")
    for name in ("secret.key", "admin.token"):
        os.chmod(data / name, 0o644)
    redis_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    env.update(
        JOBSYS_DATA_DIR=str(data),
        JOBSYS_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",  # nothing answers there
        JOBSYS_WEB_PORT=str(web_port),
        JOBSYS_FLOWER_PORT=str(free_port()),
        JOBSYS_CATALOG_DIR=str(CATALOG),
        JOBSYS_PYTHON_CONCURRENCY="1",
        JOBSYS_DOCKER_CONCURRENCY="1",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [str(JOBSYS), "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    kids: dict[int, str] = {}
    try:
        wait_until(lambda: "jobsys is running" in log.read_text(), 30, "the banner")
        wait_until(
            lambda: len(children_of(run.pid)) == 6, 30, "redis, web, 2 workers, beat, Flower"
        )
        kids = children_of(run.pid)
        password = (data / "redis.password").read_text().strip()
        url = f"redis://:{password}@127.0.0.1:{redis_port}/0"

        # Without the password Redis refuses; with it, it answers, on loopback only.
        assert raw_ping(redis_port).startswith(b"-NOAUTH")
        with redis.Redis.from_url(url, socket_timeout=5) as authed:
            assert authed.ping()
            assert authed.config_get("bind")["bind"] == "127.0.0.1"
            assert authed.config_get("protected-mode")["protected-mode"] == "yes"

        # Every child gets the password in its environment, no command line shows it.
        assert not any(password in cmd for cmd in kids.values())
        started = {p: cmd for p, cmd in kids.items() if "redis-server" not in cmd}
        assert len(started) == 5, kids
        assert {p: environ_of(p)["JOBSYS_REDIS_URL"] for p in started} == dict.fromkeys(
            started, url
        )
        # ... and uses it: the web app reaches the workers through that Redis.
        token = (data / "admin.token").read_text().strip()
        assert token != "jst_0123456789ab.old"

        def workers_online() -> bool:
            answer = httpx.get(
                f"http://127.0.0.1:{web_port}/api/workers",
                headers=bearer_of(token),
                timeout=10,
            )
            online = [w for w in answer.json()["workers"] if w.get("state") == "online"]
            return len(online) == 2

        wait_until(workers_online, 60, "both workers online, seen by the web app")

        # The folder and everything in it is for this user only, and the log said so.
        assert mode(data) == 0o700
        files = {p.name: mode(p) for p in data.iterdir()}
        assert {"jobsys.db", "secret.key", "admin.token", "redis.password", "redis.conf"} <= set(
            files
        )
        assert files == dict.fromkeys(files, 0o600)
        said = log.read_text()
        for name in ("secret.key", "admin.token"):
            assert f"{data / name} was mode 0644; changed it to 0600" in said
        assert f"{data} was mode 0755; changed it to 0700" in said
        assert password not in said

        run.send_signal(signal.SIGINT)  # Ctrl-C
        assert run.wait(timeout=30) == 0
        wait_until(lambda: not any(alive(p) for p in kids), 5, "every child to be gone")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in kids:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
