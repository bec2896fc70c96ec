"""Schedules through the client and the CLI against the live server and worker:
create, read, edit, run now (the job runs), disable, delete; bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobsys import NotFoundError, PermissionDenied, SpecError
from tests.support.live import LiveStack

pytestmark = pytest.mark.integration

SPEC = {"name": "abs", "steps": [{"kind": "function", "function": "builtins:abs", "items": [-3]}]}


def cli(stack: LiveStack, *args: str, role: str = "admin") -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "JOBSYS_URL": stack.url, "JOBSYS_TOKEN": stack.token(role)}
    return subprocess.run(
        [sys.executable, "-m", "jobsys.cli", "schedules", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_client_crud_and_run_now(stack: LiveStack) -> None:
    name = f"client-{stack.name}"
    with stack.client("admin") as admin:
        created = admin.create_schedule(name, SPEC, cron="@daily", timezone="Asia/Tokyo")
        assert created["cron"] == "0 0 * * *" and created["next_fire_at"].endswith(
            "T15:00:00+00:00"
        )
        assert name in [s["name"] for s in admin.schedules()]
        edited = admin.update_schedule(name, interval_s=86400, catch_up="once")
        assert edited["interval_s"] == 86400 and edited["cron"] is None
        with pytest.raises(SpecError, match="timezone"):
            admin.update_schedule(name, timezone="Moon/Base")
        with stack.client("operator") as operator:
            job = operator.run_schedule_now(name).wait(timeout=60)
            assert job.status == "completed" and job.results() == [3]
            with pytest.raises(PermissionDenied, match="'schedule' right"):
                operator.update_schedule(name, enabled=False)
        runs = admin.schedule_runs(name)
        assert [(r["trigger"], r["job_id"], r["job_status"]) for r in runs] == [
            ("manual", job.id, "completed")
        ]
        assert admin.schedule(name)["next_fire_at"] == edited["next_fire_at"]
        admin.delete_schedule(name)
        with pytest.raises(NotFoundError):
            admin.schedule(name)


# The CLI speaks HTTP: the database behind it is the other tests' business.
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_cli(stack: LiveStack, tmp_path: Path) -> None:
    name = f"cli-{stack.name}"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    bad = cli(stack, "create", name, "--cron", "*/5 * * *", "--spec", str(spec_file))
    assert bad.returncode == 2 and "cron" in bad.stderr and "give 5" in bad.stderr
    made = cli(stack, "create", name, "--interval", "3600", "--spec", str(spec_file), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["interval_s"] == 3600
    listed = cli(stack, "list", role="viewer")
    assert listed.returncode == 0 and name in listed.stdout and "every 3600 s" in listed.stdout
    off = cli(stack, "disable", name)
    assert off.returncode == 0 and "disabled" in off.stdout
    assert json.loads(cli(stack, "show", name, "--json").stdout)["enabled"] is False
    ran = cli(stack, "run-now", name, role="operator")
    assert ran.returncode == 0 and ran.stdout.split()[1] == "queued"
    history = cli(stack, "runs", name)
    assert "manual" in history.stdout and ran.stdout.split()[0] in history.stdout
    denied = cli(stack, "delete", name, role="operator")
    assert denied.returncode == 4 and "'schedule' right" in denied.stderr
    assert cli(stack, "delete", name).returncode == 0
    missing = cli(stack, "show", name)
    assert missing.returncode == 3 and "no schedule" in missing.stderr
