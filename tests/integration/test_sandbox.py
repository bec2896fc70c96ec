"""The function-step sandbox, attacked as a developer would: every test runs
real user code in a real bubblewrap sandbox (``workers.sandbox``) and checks
that what it reaches is nothing jobsys would not hand it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from tests.support.services import missing
from workers.sandbox import launcher
from workers.sandbox.launcher import ZYGOTE_INSIDE, SandboxUser, code_paths
from workers.sandbox.runner import ChunkRun, Sandbox, SandboxError

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-key-that-must-not-leak-0123456789"


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    # What a worker holds: the key in its environment and in a file of its data folder.
    monkeypatch.setenv("JOBSYS_SECRET_KEY", SECRET)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "secret.key").write_text(SECRET)
    box = Sandbox(SandboxUser.named("nobody"), hide=[str(data)])
    try:
        yield box
    finally:
        box.close()


def call(box: Sandbox, fn: Callable[..., Any], items: list[Any], **extra: Any) -> ChunkRun:
    request = {
        "function": {"pickle": base64.b64encode(cloudpickle.dumps(fn)).decode()},
        "items": items,
        **extra,
    }
    lines: list[tuple[str, str]] = []
    run = box.run(request, lambda s, line: lines.append((s, line)), deadline=time.monotonic() + 30)
    run.lines = lines  # type: ignore[attr-defined]
    return run


def value(run: ChunkRun, i: int = 0) -> Any:
    outcome = run.outcomes[i]
    assert outcome["ok"], outcome
    if "pickle" in outcome:
        return cloudpickle.loads(base64.b64decode(outcome["pickle"]))
    return outcome["json"]


def test_the_environment_carries_no_jobsys_setting_or_secret(sandbox: Sandbox) -> None:
    env = value(call(sandbox, lambda _: dict(os.environ), [0]))
    assert not [k for k in env if k.startswith("JOBSYS_")], env
    assert SECRET not in repr(env)
    assert os.environ["JOBSYS_SECRET_KEY"] == SECRET  # the worker did hold it


def test_the_workers_processes_and_their_environ_are_out_of_sight(sandbox: Sandbox) -> None:
    worker = os.getpid()

    def look(pid: int) -> dict[str, Any]:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ: Any = f.read()
        except OSError as exc:
            environ = type(exc).__name__
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        return {"environ": environ, "pids": pids, "me": os.getpid()}

    seen = value(call(sandbox, look, [worker]))
    assert seen["environ"] == "FileNotFoundError"
    # Its own PID namespace: bubblewrap's init, the zygote and this chunk.
    assert len(seen["pids"]) <= 3 and seen["me"] in seen["pids"], seen


def test_the_data_folder_is_not_there_even_inside_a_mounted_code_path(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A project folder on the import path that holds the data folder (as
    # `make run` keeps .jobsys/ in the checkout): mounted, with the data masked.
    # Under /tmp, as a CI checkout is: mounted onto the sandbox's own /tmp, and
    # kept when the sandbox clears /tmp after each chunk.
    project = tmp_path / "project"
    (project / ".jobsys").mkdir(mode=0o700, parents=True)
    (project / ".jobsys" / "secret.key").write_text(SECRET)
    (project / "helper.py").write_text("X = 1\n")
    project.chmod(0o755)  # a checkout others may read; its data folder stays 0700
    monkeypatch.syspath_prepend(str(project))
    assert str(project) in code_paths()
    box = Sandbox(SandboxUser.named("nobody"), hide=[str(project / ".jobsys")])

    def read(paths: list[str]) -> list[str]:
        found = []
        for path in paths:
            try:
                with open(path) as f:
                    found.append(f.read())
            except OSError as exc:
                found.append(type(exc).__name__)
        return found

    try:
        seen = value(
            call(box, read, [[str(project / ".jobsys" / "secret.key"), str(project / "helper.py")]])
        )
        elsewhere = value(call(box, read, [[str(tmp_path / "data" / "secret.key")]]))
        again = value(call(box, read, [[str(project / "helper.py")]]))
    finally:
        box.close()
    # Masked by an empty folder (not merely unreadable: a worker that is not
    # root runs the sandbox as its own uid, outside, which could read it).
    assert seen == ["FileNotFoundError", "X = 1\n"], seen
    assert elsewhere == ["FileNotFoundError"] and again == ["X = 1\n"]


def test_memory_holds_no_key_and_no_engine(sandbox: Sandbox) -> None:
    def scan(parts: list[str]) -> dict[str, Any]:
        import gc
        import sys

        term = "".join(parts)  # built here, so no constant of this code holds it
        holders = [
            type(o).__name__
            for o in gc.get_objects()
            if isinstance(o, (dict, list, tuple, set)) and term in repr(o)
        ]
        loaded = sorted(
            m for m in sys.modules if m.split(".")[0] in ("jobsys", "sqlalchemy", "redis", "kombu")
        )
        return {"holders": holders, "loaded": loaded}

    assert value(call(sandbox, scan, [[SECRET[:10], SECRET[10:]]])) == {"holders": [], "loaded": []}


def _connector() -> Callable[[int], str]:
    """A function that connects to a loopback port and says how it went (made in
    here so that it travels to the sandbox by value, not by this module's name)."""

    def connect(port: int) -> str:
        import socket

        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            return type(exc).__name__
        return "connected"

    return connect


def test_no_network_so_not_the_database_or_redis_on_loopback(sandbox: Sandbox) -> None:
    run = call(sandbox, _connector(), [5432, 6379])
    assert [value(run, 0), value(run, 1)] == ["ConnectionRefusedError"] * 2 or all(
        value(run, i) != "connected" for i in (0, 1)
    ), run.outcomes


def test_it_runs_as_the_sandbox_user_not_as_the_worker(sandbox: Sandbox) -> None:
    nobody = SandboxUser.named("nobody")
    assert value(call(sandbox, lambda _: [os.getuid(), os.getgid()], [0])) == [
        nobody.uid,
        nobody.gid,
    ]
    assert os.getuid() != nobody.uid


def test_a_chunk_leaves_nothing_for_the_next(sandbox: Sandbox) -> None:
    def spoil(_: Any) -> str:
        import builtins
        import os
        import subprocess
        import threading
        import time

        builtins.len = lambda _: 42  # type: ignore[assignment]
        with open("/tmp/left-behind", "w") as f:
            f.write("x")
        threading.Thread(target=time.sleep, args=(60,), daemon=False).start()
        subprocess.Popen(["sleep", "60"], start_new_session=True)
        return os.getcwd()

    def inspect(_: Any) -> dict[str, Any]:
        import os
        import threading

        return {
            "len": len([1, 2]),
            "file": os.path.exists("/tmp/left-behind"),
            "threads": threading.active_count(),
            "processes": len([p for p in os.listdir("/proc") if p.isdigit()]),
            "cwd": os.getcwd(),
        }

    first_cwd = value(call(sandbox, spoil, [0]))
    seen = value(call(sandbox, inspect, [0]))
    assert seen["len"] == 2 and not seen["file"] and seen["threads"] == 1, seen
    assert seen["processes"] <= 3 and seen["cwd"] != first_cwd, seen


def test_output_arrives_line_by_line_and_outcomes_in_order(sandbox: Sandbox) -> None:
    def work(x: int) -> Any:
        import logging
        import sys

        print("item", x)
        logging.getLogger("user").warning("careful with %s", x)
        sys.stdout.write("no newline")
        if x == 2:
            raise ValueError("two is bad")
        if x == 4:
            return 2**70 + 1  # JSON carries it; a 64-bit encoder does not
        return (x, x) if x == 3 else x * 10

    run = call(sandbox, work, [1, 2, 3, 4])
    assert [o["i"] for o in run.outcomes] == [0, 1, 2, 3]
    assert value(run, 0) == 10 and value(run, 2) == (3, 3) and value(run, 3) == 2**70 + 1
    assert run.outcomes[2]["repr"] == "(3, 3)"
    assert run.outcomes[1]["error"]["type"] == "ValueError"
    lines = run.lines  # type: ignore[attr-defined]
    assert ("stdout", "item 1") in lines and ("stderr", "careful with 2") in lines, lines


def test_each_line_reaches_the_chunk_that_printed_it_and_no_other(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back to back, the next chunk's process prints while the worker still
    reads the end of the last one (slowly here, as a busy worker would); a
    thread the last one left keeps printing."""
    read_end = Sandbox._await_exit

    def busy_worker(self: Sandbox, deadline: float) -> bool:
        time.sleep(0.05)  # the next chunk has started, and printed, meanwhile
        return read_end(self, deadline)

    monkeypatch.setattr(Sandbox, "_await_exit", busy_worker)

    def chatter(tag: str) -> str:
        import threading

        def babble() -> None:
            while True:
                print(f"{tag} left behind", flush=True)

        if tag == "first":
            threading.Thread(target=babble, daemon=True).start()
        for n in range(50):
            print(f"{tag} {n}")
        return tag

    runs = [call(sandbox, chatter, [tag]) for tag in ("first", "second", "third") * 5]
    for run in runs:
        tag = value(run)
        mine = [line for _, line in run.lines if line.startswith(f"{tag} ")]  # type: ignore[attr-defined]
        others = [line for _, line in run.lines if not line.startswith(f"{tag} ")]  # type: ignore[attr-defined]
        assert [line for line in mine if "left" not in line] == [f"{tag} {n}" for n in range(50)]
        assert others == [], (tag, others[:3])


def test_a_chunk_past_its_deadline_is_killed_and_the_next_one_runs(sandbox: Sandbox) -> None:
    def forever(_: Any) -> None:
        import time

        time.sleep(3600)

    request = {
        "function": {"pickle": base64.b64encode(cloudpickle.dumps(forever)).decode()},
        "items": [0],
    }
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sandbox.run(request, lambda s, line: None, deadline=time.monotonic() + 1)
    assert time.monotonic() - started < 10
    assert value(call(sandbox, lambda x: x + 1, [1])) == 2


def test_a_crash_and_a_memory_limit_are_reported_not_hidden(sandbox: Sandbox) -> None:
    def die(_: Any) -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    crashed = call(sandbox, die, [0, 1])
    assert crashed.outcomes == [] and crashed.signal == signal.SIGKILL

    def hog(_: Any) -> int:
        return len(bytearray(400 * 1024 * 1024))

    limited = call(sandbox, hog, [0], memory=200 * 1024 * 1024)
    assert limited.outcomes[0]["error"]["type"] == "MemoryError", limited.outcomes
    assert value(call(sandbox, hog, [0])) == 400 * 1024 * 1024


def test_open_files_and_processes_are_limited_per_chunk(sandbox: Sandbox) -> None:
    def open_many(n: int) -> object:
        import os

        held = []
        try:
            for _ in range(n):
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            return [type(exc).__name__, len(held)]
        return len(held)

    limited = call(sandbox, open_many, [500], files=64)
    kind, opened = value(limited)
    assert kind == "OSError" and opened < 64, limited.outcomes
    assert value(call(sandbox, open_many, [500])) == 500  # the next chunk: no limit given

    def spawn(n: int) -> object:
        import os

        children = []
        try:
            for _ in range(n):
                pid = os.fork()
                if pid == 0:
                    os.read(os.open("/dev/zero", os.O_RDONLY), 1)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            return [type(exc).__name__, len(children)]
        finally:
            for pid in children:
                os.waitpid(pid, 0)
        return len(children)

    if os.geteuid() != 0:
        pytest.skip("a process limit counts the real user's processes: it is set for root workers")
    kind, started = value(call(sandbox, spawn, [200], procs=20))
    assert kind in ("BlockingIOError", "OSError") and started < 20


def test_a_step_that_asks_for_the_network_gets_a_sandbox_with_one(tmp_path: Path) -> None:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    box = Sandbox(SandboxUser.named("nobody"), network=True)
    try:
        assert value(call(box, _connector(), [port])) == "connected"
    finally:
        box.close()
        server.close()


def test_a_bad_function_fails_every_item_with_the_reason(sandbox: Sandbox) -> None:
    run = sandbox.run(
        {"function": {"import": "no_such_module:f"}, "items": [1, 2]},
        lambda s, line: None,
        deadline=time.monotonic() + 30,
    )
    assert [o["error"]["type"] for o in run.outcomes] == ["ModuleNotFoundError"] * 2


def test_the_sandbox_dies_with_the_worker_process(tmp_path: Path) -> None:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    marker = tmp_path / "started"
    script = textwrap.dedent(
        f"""
        import base64, time, cloudpickle
        from workers.sandbox.runner import Sandbox
        from workers.sandbox.launcher import SandboxUser

        def forever(_):
            import time
            time.sleep(3600)

        box = Sandbox(SandboxUser.named("nobody"))
        box.start()
        open({str(marker)!r}, "w").write(str(box._proc.pid))
        box.run({{"function": {{"pickle": base64.b64encode(cloudpickle.dumps(forever)).decode()}},
                 "items": [0]}}, lambda s, l: None, deadline=time.monotonic() + 3600)
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            assert worker.poll() is None, "the stand-in worker died early"
            time.sleep(0.05)
        bwrap_pid = int(marker.read_text())
        time.sleep(0.5)  # the chunk is running
        # This sandbox's processes (other tests' sandboxes may run meanwhile).
        tree = [pid for pid in _sandboxed_pids() if bwrap_pid in _ancestors(pid)]
        assert len(tree) >= 2, "no zygote and chunk found under bubblewrap while the chunk ran"
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, [*tree, bwrap_pid])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, [*tree, bwrap_pid])), [p for p in tree if _alive(p)]
    finally:
        if worker.poll() is None:
            worker.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        found.append(pid)
    return found


def _sandboxed_pids() -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if ZYGOTE_INSIDE.encode() in f.read() and _alive(int(name)):
                    found.append(int(name))
        except OSError:
            continue
    return found


def test_a_sandbox_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    with pytest.raises(ValueError, match="JOBSYS_SANDBOX_USER='no-such-user-here'"):
        SandboxUser.named("no-such-user-here")
    monkeypatch.setattr(launcher, "ZYGOTE", Path("/nonexistent/zygote.py"))
    box = Sandbox(SandboxUser.named("nobody"))
    with pytest.raises(SandboxError, match=r"did not start.*nonexistent"):
        box.start()
    assert not box.alive


def test_a_chunk_that_kills_the_zygote_gets_the_next_chunk_a_new_sandbox(
    sandbox: Sandbox,
) -> None:
    def kill_the_parent(_: Any) -> None:
        import os
        import time

        os.kill(os.getppid(), 9)
        time.sleep(5)

    assert value(call(sandbox, lambda x: x + 1, [1])) == 2
    with pytest.raises(SandboxError, match="ended in the middle of a chunk"):
        call(sandbox, kill_the_parent, [0])
    assert not sandbox.alive
    assert value(call(sandbox, lambda x: x * 2, [21])) == 42


def test_the_probe_says_on_off_or_why_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobsys.config import Settings
    from workers.sandbox import isolation

    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")

    def probed(**fields: str) -> isolation.Isolation:
        return isolation.probe(Settings.from_env({}, data_dir=str(tmp_path), **fields))

    assert probed(sandbox="on").state == "on"
    off = probed(sandbox="off")
    assert off.state == "off" and "keys and database" in off.why
    no_user = probed(sandbox="on", sandbox_user="no-such-user-here")
    assert no_user.state == "unavailable" and "no-such-user-here" in no_user.why
    monkeypatch.setattr(isolation, "bwrap_path", lambda: None)
    no_bwrap = probed(sandbox="on")
    assert no_bwrap.state == "unavailable" and "JOBSYS_SANDBOX=off" in no_bwrap.why


def test_an_operators_shared_folder_is_read_write_and_kept_but_not_the_data_folder(
    tmp_path: Path,
) -> None:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    shared = tmp_path / "shared"
    data = shared / "data"  # a data folder that falls inside the shared one
    data.mkdir(parents=True, mode=0o700)
    (data / "secret.key").write_text(SECRET)
    os.chmod(shared, 0o777)

    def use(args: list[str]) -> list[object]:
        import os

        folder, key = args
        with open(os.path.join(folder, "out.txt"), "w") as f:
            f.write("from the job")
        open("/tmp/scratch.txt", "w").close()
        return [os.path.exists(key), sorted(os.listdir(folder))]

    def look(args: list[str]) -> list[bool]:
        import os

        folder, _ = args
        return [os.path.exists(os.path.join(folder, "out.txt")), os.path.exists("/tmp/scratch.txt")]

    box = Sandbox(SandboxUser.named("nobody"), hide=[str(data)], binds=[str(shared)])
    try:
        args = [str(shared), str(data / "secret.key")]
        assert value(call(box, use, [args])) == [False, ["data", "out.txt"]]
        # The next chunk finds the shared file, and none of the last one's scratch.
        assert value(call(box, look, [args])) == [True, False]
    finally:
        box.close()
    assert (shared / "out.txt").read_text() == "from the job"


def test_jobsys_imports_in_the_sandbox_wherever_the_worker_started(tmp_path: Path) -> None:
    """A worker started outside the checkout (as ``make bench`` starts its own) has
    no project folder on its path: an editable install's finder points there."""
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    repo = Path(__file__).parents[2]
    script = textwrap.dedent(
        f"""
        import base64, sys, time, cloudpickle
        sys.path[:] = [p for p in sys.path if p not in ("", ".", {str(repo)!r})]
        from workers.sandbox.runner import Sandbox
        from workers.sandbox.launcher import SandboxUser

        def where(_):
            import jobsys
            return jobsys.__file__

        box = Sandbox(SandboxUser.named("nobody"))
        pickled = base64.b64encode(cloudpickle.dumps(where)).decode()
        request = {{"function": {{"pickle": pickled}}, "items": [0]}}
        run = box.run(request, lambda s, l: None, deadline=time.monotonic() + 60)
        box.close()
        print(run.outcomes[0])
        """
    )
    # Found through the editable install's finder alone, as in a worker started elsewhere.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "'ok': True" in done.stdout and "jobsys/__init__.py" in done.stdout, done.stdout


def test_a_worker_that_is_not_root_sandboxes_through_a_user_namespace(tmp_path: Path) -> None:
    """The path a developer's own `make run` takes: a worker that is not root
    starts bubblewrap with a user namespace of its own (a root test run gets
    there as uid 1000 of a user namespace, which is not root to the launcher)."""
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    project = tmp_path / "project"
    (project / ".jobsys").mkdir(mode=0o700, parents=True)
    (project / ".jobsys" / "secret.key").write_text(SECRET)
    project.chmod(0o755)
    script = textwrap.dedent(
        f"""
        import base64, json, os, sys, time, cloudpickle
        from workers.sandbox.runner import Sandbox
        from workers.sandbox.launcher import SandboxUser, bwrap_argv

        def attack(worker):
            import os
            seen = {{"uid": os.getuid(), "env": sorted(os.environ)}}
            for path in (f"/proc/{{worker}}/environ", {str(project / ".jobsys" / "secret.key")!r}):
                try:
                    with open(path, "rb") as f:
                        seen[path] = f.read().decode(errors="replace")
                except OSError as exc:
                    seen[path] = type(exc).__name__
            return json.dumps(seen)

        assert os.geteuid() != 0
        user = SandboxUser.named("nobody")
        argv = bwrap_argv(results_fd=3, control_fd=4, user=user, hide=[])
        box = Sandbox(user, hide=[{str(project / ".jobsys")!r}])
        pickled = base64.b64encode(cloudpickle.dumps(attack)).decode()
        request = {{"function": {{"pickle": pickled}}, "items": [os.getpid()]}}
        run = box.run(request, lambda s, l: None, deadline=time.monotonic() + 60)
        box.close()
        print(json.dumps({{"argv": argv, "outcome": run.outcomes[0], "worker": os.getpid()}}))
        """
    )
    argv = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        argv = ["unshare", "--user", "--map-user=1000", "--map-group=1000", *argv]
    env = {**os.environ, "JOBSYS_SECRET_KEY": SECRET, "PYTHONPATH": str(project)}
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0 and "unshare" in done.stderr + done.stdout:
        missing("user namespaces", f"allow unprivileged ones ({done.stderr.strip()[:200]})")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "--unshare-user" in report["argv"]  # the path a worker that is not root takes
    outcome = report["outcome"]
    assert outcome["ok"], outcome
    seen = json.loads(outcome["json"])
    assert seen["uid"] == SandboxUser.named("nobody").uid, seen
    assert not [k for k in seen["env"] if k.startswith("JOBSYS_")], seen["env"]
    assert SECRET not in json.dumps(seen), seen
    assert seen[f"/proc/{report['worker']}/environ"] in ("FileNotFoundError", "PermissionError")
    assert seen[str(project / ".jobsys" / "secret.key")] == "FileNotFoundError"


def test_what_a_chunk_imported_is_loaded_ahead_but_never_a_file_it_wrote(sandbox: Sandbox) -> None:
    def imports(_: Any) -> list[bool]:
        import os
        import sys

        had = ["fractions" in sys.modules, "chunk_made" in sys.modules]
        with open("chunk_made.py", "w") as f:  # in the chunk's own folder
            f.write("X = 1\n")
        sys.path.insert(0, os.getcwd())
        import fractions  # noqa: F401

        import chunk_made  # noqa: F401

        return had

    assert value(call(sandbox, imports, [0])) == [False, False]
    # Installed code the last chunk imported is there already; its own file is not.
    assert value(call(sandbox, imports, [0])) == [True, False]
