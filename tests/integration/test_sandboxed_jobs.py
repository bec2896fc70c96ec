"""Function steps run by a real worker with ``JOBSYS_SANDBOX=on``: the job's code
runs in the bubblewrap sandbox, and everything a job promises still holds
(results, pickled values, item errors, live logs, soft time limits)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.support.live import LiveStack, private_stack
from tests.support.services import missing

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    tmp = tmp_path_factory.mktemp("sandboxed")
    with closing(private_stack(tmp, "sandboxed", sandbox="on")) as stacks:
        for stack, _server in stacks:
            yield stack


def test_a_job_cannot_reach_the_workers_key_or_settings(sandboxed: LiveStack) -> None:
    def spy(args: list[str]) -> dict[str, object]:
        """What a developer's function would look for: the key file, settings in the
        environment, and the key anywhere in memory (``args``: the file, and the
        key in two halves, so that no constant or item holds it whole)."""
        import gc
        import os

        path, first, second = args
        secret = first + second
        try:
            with open(path) as f:
                key: object = f.read()
        except OSError as exc:
            key = type(exc).__name__
        return {
            "jobsys_env": sorted(k for k in os.environ if k.startswith("JOBSYS_")),
            "key_file": key,
            "uid": os.getuid(),
            "holders": sum(
                1 for o in gc.get_objects() if isinstance(o, (dict, list)) and secret in repr(o)
            ),
        }

    # ``spy`` is defined here so that it travels by value: importing this test
    # module in the sandbox would bring the test harness's own copy of the key.
    # This stack takes its key from the environment; a local install keeps it here.
    key_file = Path(sandboxed.settings.data_dir).resolve() / "secret.key"
    key_file.write_text(sandboxed.settings.secret_key)
    key_file.chmod(0o600)
    key = sandboxed.settings.secret_key
    with sandboxed.client() as client:
        (seen,) = client.map(spy, [[str(key_file), key[:8], key[8:]]]).wait(timeout=60).results()
    assert seen["jobsys_env"] == [] and seen["key_file"] == "FileNotFoundError", seen
    assert seen["uid"] != os.getuid() and seen["holders"] == 0, seen


def test_results_errors_pickles_and_logs_come_back_as_before(sandboxed: LiveStack) -> None:
    def work(x: object) -> object:
        print(f"working on {x}")
        if isinstance(x, tuple):  # an item that travelled pickled
            return sum(x)
        if x == 3:
            raise ValueError("three")
        return {x} if x == 2 else x * 10  # a set travels pickled

    with sandboxed.client() as client:
        job = client.map(work, [1, 2, 3, 4, (5, 6)], chunk_size=2, tolerate_failures=True)
        job.wait(timeout=60)
        outcomes = list(job.outcomes())
        logs = "\n".join(entry["line"] for entry in client.job(job.id).logs())
    assert [v if ok else v["type"] for ok, v in outcomes] == [10, {2}, "ValueError", 40, 11]
    assert "[items 0-1] working on 1" in logs and "[items 2-3] working on 4" in logs, logs


def test_a_function_that_cannot_be_loaded_fails_its_items_with_the_reason(
    sandboxed: LiveStack,
) -> None:
    spec = {"steps": [{"kind": "function", "function": "no_such_module:f", "items": [1, 2]}]}
    with sandboxed.client() as client:
        job = client.submit_spec(spec).wait(timeout=60)
        assert job.status == "failed"
        errors = [v["type"] for ok, v in client.job(job.id).outcomes() if not ok]
    assert errors == ["ModuleNotFoundError"] * 2


def test_the_sandbox_setting_takes_on_or_off_and_says_so_otherwise(tmp_path: Path) -> None:
    from jobsys.config import Settings
    from jobsys.errors import ConfigError

    def resolved(value: str) -> str:
        env = {"JOBSYS_SANDBOX": value, "JOBSYS_DATA_DIR": str(tmp_path)}
        return Settings.from_env(env, secret_key="k" * 20).resolved().sandbox

    assert (resolved("on"), resolved("off")) == ("on", "off")
    with pytest.raises(ConfigError, match="JOBSYS_SANDBOX='yes': give on or off"):
        resolved("yes")


def test_the_worker_says_its_function_steps_are_isolated(sandboxed: LiveStack) -> None:
    import time

    deadline = time.monotonic() + 30
    while True:
        with sandboxed.http("viewer") as http:
            workers = http.get("/api/workers").json()["workers"]
        if workers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    (worker,) = workers
    assert worker["isolation"] == "on", worker
    assert "bubblewrap sandbox as nobody" in worker["isolation_note"]
    assert "isolation on: function steps run in a bubblewrap sandbox" in sandboxed.log("worker")


def test_a_steps_memory_limit_is_its_chunks_limit(sandboxed: LiveStack) -> None:
    def hog(mib: int) -> int:
        return len(bytearray(mib * 1024 * 1024))

    with sandboxed.client() as client:
        roomy = client.map(hog, [400]).wait(timeout=60)  # within the 1g default
        capped = client.map(hog, [400], memory_limit="200m", tolerate_failures=True)
        outcomes = list(capped.wait(timeout=60).outcomes())
        assert client.job(capped.id).data["spec"]["steps"][0]["memory_limit"] == "200m"
    assert roomy.results() == [400 * 1024 * 1024]
    assert [(ok, v["type"]) for ok, v in outcomes] == [(False, "MemoryError")]


def marked(name: str) -> list[int]:
    """Host pids of processes whose name (``/proc/<pid>/comm``) is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def gone(name: str, within_s: float = 15.0) -> bool:
    import time

    deadline = time.monotonic() + within_s
    while marked(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_limits_and_cancel_end_the_sandboxed_process_and_leave_none(
    sandboxed: LiveStack,
) -> None:
    import time
    import uuid

    tag = uuid.uuid4().hex[:8]

    # Defined here, so that it travels by value: by reference, the sandbox would
    # import this test module (and pytest) inside the soft limit.
    def sleeper(args: list[object]) -> str:
        """Name this process ``args[0]`` (seen from the host) and sleep ``args[1]`` s."""
        import ctypes
        import time

        name, seconds = args
        ctypes.CDLL(None).prctl(15, str(name).encode(), 0, 0, 0)  # PR_SET_NAME
        time.sleep(float(seconds))  # type: ignore[arg-type]
        return "woke"

    with sandboxed.client() as client:
        # The second item ends 20 ms after the first, inside one outcome batch
        # (50 ms), and the third is running when the soft limit passes: the first
        # two still count, the third fails with the limit, the fourth is not run.
        soft = client.map(
            sleeper,
            [[f"soft{tag}", 1.5], [f"soft{tag}", 0.02], [f"soft{tag}", 30], [f"soft{tag}", 0]],
            chunk_size=4,
            soft_time_limit_s=2,
            time_limit_s=20,
            tolerate_failures=True,
        )
        outcomes = list(soft.wait(timeout=60).outcomes())
        assert [v if ok else v["type"] for ok, v in outcomes] == [
            "woke",
            "woke",
            "SoftTimeLimitExceeded",
            "SoftTimeLimitExceeded",
        ]
        assert outcomes[3][1]["message"].startswith("not run")
        assert gone(f"soft{tag}")

        hard = client.map(sleeper, [[f"hard{tag}", 60]], time_limit_s=2)
        assert hard.wait(timeout=60).status == "failed"
        assert gone(f"hard{tag}")

        running = client.map(sleeper, [[f"cncl{tag}", 60]])
        deadline = time.monotonic() + 30
        while not marked(f"cncl{tag}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marked(f"cncl{tag}"), "the chunk started"
        running.cancel()
        assert running.wait(timeout=60).status == "cancelled"
        assert gone(f"cncl{tag}")
        # And the worker goes on: the next chunk gets a sandbox as before.
        assert client.map(sleeper, [[f"next{tag}", 0]]).wait(timeout=60).results() == ["woke"]


def test_a_chunk_that_kills_itself_fails_its_items_once_and_the_worker_lives(
    sandboxed: LiveStack,
) -> None:
    def poison(x: int) -> int:
        import os
        import signal

        if x == 5:  # what, unsandboxed, would kill the worker's pool process
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with sandboxed.client() as client:
        job = client.map(poison, range(8), chunk_size=2).wait(timeout=60)
        values = job.results(errors="return")
        tasks = client.job(job.id).tasks()
        after = client.map(poison, [1]).wait(timeout=60)
    assert job.status == "failed"
    assert values[:4] == [0, 1, 2, 3] and values[6:] == [6, 7]
    assert [v["type"] for v in values[4:6]] == ["SandboxError"] * 2
    assert "killed by signal 9" in values[5]["message"]
    poisoned = next(t for t in tasks if t["items"] == [4, 6])
    assert poisoned["attempt"] == 1 and poisoned["state"] == "completed"  # its worker lived
    assert after.results() == [1]
