"""The Python client's ``submit`` and ``Executor``, and the ``jobsys`` CLI's job
commands (``jobs``, ``show``, ``submit spec``, ``map``, ``logs``) with their
``--json`` output and exit codes, against the live stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import CancelledError, as_completed
from pathlib import Path

import pytest

from jobsys import Executor, RemoteError
from tests.support.live import LiveStack

# Client and CLI speak HTTP: which database is behind the API is not theirs to test.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("stack", ["sqlite"], indirect=True),
]


def jobsys_cli(
    stack: LiveStack, *args: str, token: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **stack.env,
        "JOBSYS_URL": url or stack.url,
        "JOBSYS_TOKEN": token if token is not None else stack.token("developer"),
    }
    return subprocess.run(
        [sys.executable, "-m", "jobsys.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_client_submit_runs_one_call(stack: LiveStack) -> None:
    def greet(name: str, *, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    with stack.client() as c:
        job = c.submit(greet, "ann", punctuation="?").wait(timeout=60)
        assert job.status == "completed", job.error
        assert job.results() == ["hello ann?"]
        assert job.data["name"].startswith("call ")


def test_executor_is_a_drop_in_for_concurrent_futures(stack: LiveStack) -> None:
    def inverse(x: int) -> float:
        return 1 / x

    with Executor(stack.url, stack.token("developer"), chunk_size=5) as ex:
        assert list(ex.map(lambda x: x * x, range(20))) == [x * x for x in range(20)]
        assert list(ex.map(pow, [2, 3], [5, 2])) == [32, 9]
        futures = [ex.submit(inverse, x) for x in (4, 0, 2)]
        assert futures[0].result(timeout=60) == 0.25
        error = futures[1].exception(timeout=60)
        assert isinstance(error, RemoteError) and error.type == "ZeroDivisionError"
        assert "Remote traceback" in str(error)
        assert {f.result() for f in as_completed([futures[0], futures[2]], timeout=60)} == {
            0.25,
            0.5,
        }
        results = ex.map(inverse, [1, 2, 0, 4])
        assert next(results) == 1.0 and next(results) == 0.5
        with pytest.raises(RemoteError, match="ZeroDivisionError"):
            next(results)  # raised where the iteration reaches it, as executors do

    ex = Executor(stack.url, stack.token("developer"))
    slow = ex.submit(time.sleep, 30)
    time.sleep(1)
    started = time.monotonic()
    ex.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - started < 15
    with pytest.raises(CancelledError):
        slow.result(timeout=1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, -1)
    with stack.client() as c:
        cancelled = c.jobs(q="call sleep", limit=1)[0]
        assert cancelled.status == "cancelled"


def test_cli_reads_with_tables_and_json(stack: LiveStack, tmp_path: Path) -> None:
    items = tmp_path / "items.json"
    items.write_text(json.dumps([1, 4, 9, 16]))
    tag = f"cli-{uuid.uuid4().hex[:6]}"  # ours alone: the session's stack keeps other jobs
    mapped = jobsys_cli(
        stack, "map", "math:sqrt", "--items", str(items), "--tag", tag, "--wait", "--results"
    )
    assert mapped.returncode == 0, mapped.stderr
    assert [json.loads(line) for line in mapped.stdout.splitlines()] == [1.0, 2.0, 3.0, 4.0]

    listed = jobsys_cli(stack, "jobs", "--tag", tag, "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert found[0]["name"] == "map math:sqrt" and found[0]["tags"] == [tag]
    job_id = found[0]["id"]
    table = jobsys_cli(stack, "jobs", "--tag", tag, "--limit", "5")
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "STATUS", "TASKS"]
    assert job_id[:12] in table.stdout and "completed" in table.stdout

    shown = jobsys_cli(stack, "show", job_id)
    assert "status     completed" in shown.stdout and "math:sqrt over 4 items" in shown.stdout
    assert "WORKER" in shown.stdout
    shown_json = json.loads(jobsys_cli(stack, "show", job_id, "--json").stdout)
    assert shown_json["id"] == job_id and shown_json["tasks"][0]["state"] == "completed"

    lines = tmp_path / "items.jsonl"
    lines.write_text("-1\n4\n")
    failed = jobsys_cli(stack, "map", "math:sqrt", "--items", str(lines), "--wait")
    assert failed.returncode == 1 and "failed" in failed.stdout
    assert "math domain error" in failed.stderr

    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: from-yaml\ntags: [yaml]\nsteps:\n  - kind: function\n"
        "    function: builtins:abs\n    items: [-2, 3]\n"
    )
    submitted = jobsys_cli(stack, "submit", "spec", str(spec), "--wait", "--json")
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["tags"] == ["yaml"]
    logs = jobsys_cli(stack, "logs", job_id, "--json")
    assert logs.returncode == 0 and all(json.loads(x) for x in logs.stdout.splitlines())


def test_cli_exit_codes(stack: LiveStack, tmp_path: Path) -> None:
    bad_items = tmp_path / "bad.json"
    bad_items.write_text("[1, 2")
    cases = [
        (jobsys_cli(stack, "map", "nomodule", "--items", str(bad_items)), 2, "package.module"),
        (jobsys_cli(stack, "map", "math:sqrt", "--items", str(bad_items)), 2, "JSON array"),
        (jobsys_cli(stack, "show", "no-such-job"), 3, "no job"),
        (jobsys_cli(stack, "jobs", token="jst_000000000000.nope"), 4, "token"),
        (jobsys_cli(stack, "jobs", url="http://127.0.0.1:9"), 5, "cannot reach"),
        (jobsys_cli(stack, "jobs", "--status", "lost"), 2, "lost"),
    ]
    for result, code, text in cases:
        assert (result.returncode, text in result.stderr) == (code, True), result
