"""The README's CLI commands, each run with click's CliRunner against the real
web app in this process: the client commands talk to ``create_app`` through an
``httpx.WSGITransport``, the database commands (users, token, catalog reload)
use the same SQLite database through the environment. Each family checks the
exit code on success and on a bad argument (cli.py: 2 bad input or state,
3 not found), that the output shows what changed and that the service agrees."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.cli.main import main
from jobsys.client.http import Client
from jobsys.context import Context
from jobsys.errors import NotFoundError, Unauthenticated
from webui import create_app

ADMIN = Principal("ada", "admin", "test")
EXAMPLES = Path(__file__).parents[2] / "jobs"
SPEC = {
    "name": "nightly",
    "steps": [{"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}],
}


@pytest.fixture
def cli(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli("cancel", job_id)``: the command line as an admin, on the test's app."""
    app = create_app(context=ctx)
    token = service.create_token(ctx, SYSTEM, name="cli-admin", role="admin").token

    class InProcessClient(Client):
        def __init__(self, *_args: Any, **_kwargs: Any) -> None:
            super().__init__("http://jobsys.test", token, transport=httpx.WSGITransport(app=app))

    # Client commands import Client when they run (from jobsys.client.http), except
    # cli_jobs, which imported it at the top.
    monkeypatch.setattr("jobsys.client.http.Client", InProcessClient)
    monkeypatch.setattr("jobsys.cli.jobs.Client", InProcessClient)
    settings = ctx.settings
    env = {
        "JOBSYS_DATABASE_URL": settings.database_url,
        "JOBSYS_DATA_DIR": settings.data_dir,
        "JOBSYS_SECRET_KEY": settings.secret_key,
        # nothing listens here: the database commands must not need the broker
        "JOBSYS_REDIS_URL": "redis://127.0.0.1:9/0",
        "JOBSYS_DOCKER_IMAGES": ",".join(settings.docker_images),
    }

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env, input=input)

    return run


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def refused(result: Result, code: int, words: str) -> None:
    assert result.exit_code == code, (result.output, result.exception)
    assert words in result.output, result.output


def test_project_from_the_option_or_jobsys_project(cli: Any, ctx: Context) -> None:
    """``--project`` (or ``JOBSYS_PROJECT``) says where a submitted job goes and
    what ``jobs`` lists; a project that does not exist is refused, storing nothing."""
    service.create_project(ctx, SYSTEM, "data")
    spec = ("submit", "docker", "--json", "jobsys/busybox:local", "true")
    assert json.loads(ok(cli("--project", "data", *spec)))["project"] == "data"
    assert json.loads(ok(cli(*spec)))["project"] == "default"
    assert "JOBSYS_PROJECT" not in os.environ  # the option's value went with its command
    listed = json.loads(ok(cli("--project", "data", "jobs", "--json")))
    assert [j["project"] for j in listed] == ["data"]
    assert len(json.loads(ok(cli("jobs", "--json")))) == 2  # every project of the caller
    refused(cli("--project", "nowhere", *spec), 3, "no project named 'nowhere'")
    assert len(service.list_jobs(ctx, SYSTEM).items) == 2


def test_submit_docker_held_until_a_time(
    cli: Any, ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    spec = ("submit", "docker", "--json", "jobsys/busybox:local", "true")
    held = json.loads(ok(cli(*spec[:3], "--delay-s", "30", *spec[3:])))
    assert held["status"] == "queued" and held["waiting"]["reason"] == "not_before"
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    at = json.loads(ok(cli(*spec[:3], "--not-before", when.isoformat(), *spec[3:])))
    assert at["not_before"] == when.isoformat()
    refused(cli(*spec[:3], "--not-before", "soon", *spec[3:]), 2, "a time with its zone")
    assert dispatcher.published == []  # neither reached the broker
    shown = ok(cli("show", held["id"]))
    assert "waiting    not_before: starts at" in shown


def test_submit_docker(cli: Any, ctx: Context, dispatcher: MemoryDispatcher) -> None:
    out = ok(
        cli(
            "submit", "docker", "--name", "greet", "--env", "WHO=world", "--tag", "cli",
            "jobsys/busybox:local", "sh", "-c", "echo $WHO",
        )
    )  # fmt: skip
    job_id, status = out.split()
    assert status == "queued"
    job = service.get_job(ctx, ADMIN, job_id)
    assert (job.name, job.status, job.tags) == ("greet", "queued", ("cli",))
    step = job.spec["steps"][0]
    assert step["image"] == "jobsys/busybox:local"
    assert step["command"] == ["sh", "-c", "echo $WHO"] and step["env"] == {"WHO": "world"}
    assert (
        json.loads(ok(cli("submit", "docker", "--json", "jobsys/busybox:local", "true")))["status"]
        == "queued"
    )
    refused(
        cli("submit", "docker", "--env", "WHO", "jobsys/busybox:local", "true"), 2, "NAME=VALUE"
    )
    refused(cli("submit", "docker", "evil/miner:latest", "true"), 2, "evil/miner")  # server: 400
    refused(cli("submit", "docker", "jobsys/busybox:local"), 2, "Missing argument")
    assert service.list_jobs(ctx, ADMIN).total == 2


def test_submit_docker_as_the_readme_writes_it(cli: Any, ctx: Context) -> None:
    """``IMAGE -- CMD``: the ``--`` separates (it was stored as the command's first word)."""
    out = ok(cli("submit", "docker", "jobsys/busybox:local", "--", "sh", "-c", "echo hi"))
    job = service.get_job(ctx, ADMIN, out.split()[0])
    assert job.spec["steps"][0]["command"] == ["sh", "-c", "echo hi"]
    refused(cli("submit", "docker", "jobsys/busybox:local", "--"), 2, "give the command")


def test_cancel_rerun_and_resume(cli: Any, ctx: Context) -> None:
    first = service.submit_job(ctx, ADMIN, {**SPEC, "name": "first"})
    assert ok(cli("cancel", first.id)).split() == [first.id, "cancelled"]
    assert service.get_job(ctx, ADMIN, first.id).status == "cancelled"
    refused(cli("cancel", first.id), 2, "only queued or running jobs can be cancelled")
    refused(cli("cancel", "no-such-job"), 3, "no-such-job")

    new_id, status = ok(cli("rerun", first.id)).split()
    assert new_id != first.id and status == "queued"
    assert service.get_job(ctx, ADMIN, new_id).rerun_of == first.id
    refused(cli("rerun", "no-such-job"), 3, "no-such-job")

    resumed = json.loads(ok(cli("resume", "--json", first.id)))
    assert resumed["id"] not in (first.id, new_id) and resumed["status"] == "queued"
    assert service.get_job(ctx, ADMIN, resumed["id"]).rerun_of == first.id
    refused(cli("resume", new_id), 2, "only failed or cancelled jobs can be resumed")
    assert service.list_jobs(ctx, ADMIN).total == 3


def test_start_a_template(cli: Any, ctx: Context) -> None:
    service.reload_catalog(ctx, ADMIN, EXAMPLES)
    job_id, status = ok(cli("start", "echo", "--var", "message=hi", "--var", "times=2")).split()
    assert status == "queued"
    job = service.get_job(ctx, ADMIN, job_id)
    assert job.template == "echo" and job.variables is not None
    assert (job.variables["message"], job.variables["times"]) == ("hi", 2)
    refused(cli("start", "echo", "--var", "times"), 2, "give NAME=VALUE")
    refused(cli("start", "echo", "--var", "times=0"), 2, "variables.times")
    refused(cli("start", "no-such-template"), 3, "no-such-template")
    assert service.list_jobs(ctx, ADMIN).total == 1


def template(folder: Path, name: str, text: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "job.yaml").write_text(text)


GOOD = (
    "variables: {word: {pattern: '[a-z]+'}}\n"
    "steps: [{kind: docker, image: jobsys/busybox:local, command: [echo, '{{word}}']}]\n"
)


def test_catalog_test_and_reload(cli: Any, ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    template(folder, "greet", GOOD)
    rendered = json.loads(
        ok(cli("catalog", "test", "greet", "--folder", str(folder), "--var", "word=hi"))
    )
    assert rendered["steps"][0]["command"] == ["echo", "hi"]
    assert service.list_catalog(ctx, ADMIN).templates == ()  # test loads nothing
    refused(cli("catalog", "test", "greet", "--folder", str(folder), "--var", "word=HI"), 2, "word")
    refused(cli("catalog", "test", "nope", "--folder", str(folder)), 3, "no template 'nope'")

    assert "loaded greet" in ok(cli("catalog", "reload", "--folder", str(folder)))
    assert [t.name for t in service.list_catalog(ctx, ADMIN).templates] == ["greet"]
    template(folder, "broken", "steps: [unclosed")
    refused(cli("catalog", "test", "broken", "--folder", str(folder)), 2, "cannot parse")
    result = cli("catalog", "reload", "--folder", str(folder))
    refused(result, 2, "broken broken")
    assert "loaded greet" in result.stdout
    catalog = service.list_catalog(ctx, ADMIN)
    assert [t.name for t in catalog.templates] == ["greet"]
    assert [b.name for b in catalog.broken] == ["broken"]


def test_users_add_list_set_role_and_disable(cli: Any, ctx: Context) -> None:
    assert ok(cli("users", "add", "bob", "--password-stdin", input="correct horse\n")) == (
        "added bob (operator in default)\n"
    )
    assert service.sign_in(ctx, "bob", "correct horse").role_in("default") == "operator"
    refused(cli("users", "add", "bob", "--password-stdin", input="correct horse\n"), 2, "bob")
    refused(cli("users", "add", "kim", "--password-stdin", input="short\n"), 2, "at least 8")
    refused(
        cli("users", "add", "kim", "--project", "nowhere", "--password-stdin", input="x" * 9),
        3,
        "no project named 'nowhere'",
    )
    listed = ok(cli("users", "list")).split()
    assert listed == ["bob", "active", "operator", "in", "default"]
    assert json.loads(ok(cli("users", "list", "--json")))[0]["projects"] == {"default": "operator"}

    assert ok(cli("users", "set-role", "bob", "developer")) == "bob is now developer in default\n"
    assert [(u.name, u.projects) for u in service.list_users(ctx, ADMIN)] == [
        ("bob", {"default": "developer"})
    ]
    refused(cli("users", "set-role", "bob", "emperor"), 2, "emperor")
    refused(cli("users", "set-role", "nobody", "viewer"), 3, "nobody")
    refused(cli("users", "set-role", "bob", "admin", "--project", "x", "--global"), 2, "not both")

    # Projects: add one, grant bob a role there; --global makes a global role.
    assert ok(cli("projects", "add", "data")) == "added project data\n"
    refused(cli("projects", "add", "data"), 2, "exists")
    refused(cli("projects", "add", "Data Team"), 2, "lower-case")
    refused(cli("projects", "add", "data2\n"), 2, "lower-case")  # "$" would let the newline in
    assert ok(cli("projects", "grant", "data", "bob", "viewer")) == "bob is now viewer in data\n"
    refused(cli("projects", "grant", "nowhere", "bob", "viewer"), 3, "no project named")
    listed = ok(cli("projects", "list")).splitlines()
    assert listed == [
        "data                     bob (viewer)",
        "default                  bob (developer)",
    ]
    assert ok(cli("users", "set-role", "bob", "admin", "--global")) == "bob is now admin globally\n"
    bob = service.sign_in(ctx, "bob", "correct horse")
    assert (bob.role, bob.projects) == ("admin", (("data", "viewer"), ("default", "developer")))
    assert ok(cli("projects", "revoke", "data", "bob")) == "bob is no longer a member of data\n"
    refused(cli("projects", "revoke", "data", "bob"), 3, "not a member")

    assert ok(cli("users", "disable", "bob")) == "bob disabled\n"
    assert [u.disabled for u in service.list_users(ctx, ADMIN)] == [True]
    assert ok(cli("users", "list")).split() == [
        "bob", "disabled", "admin", "(global),", "developer", "in", "default"
    ]  # fmt: skip
    with pytest.raises(Unauthenticated):
        service.sign_in(ctx, "bob", "correct horse")
    refused(cli("users", "disable", "nobody"), 3, "nobody")


def test_token_list_and_revoke(cli: Any, ctx: Context) -> None:
    issued = service.create_token(ctx, ADMIN, name="deploy-bot", role="operator")
    info = next(t for t in service.list_tokens(ctx, ADMIN) if t.name == "deploy-bot")
    row = next(line for line in ok(cli("token", "list")).splitlines() if "deploy-bot" in line)
    assert row.split()[:6] == [
        str(info.id), info.key_id, "operator", "default", "deploy-bot", "active"
    ]  # fmt: skip
    assert issued.token not in ok(cli("token", "list", "--json"))  # never the token itself

    assert ok(cli("token", "revoke", str(info.id))) == f"revoked token {info.id}\n"
    revoked = next(t for t in service.list_tokens(ctx, ADMIN) if t.id == info.id)
    assert revoked.state == "revoked"
    with pytest.raises(Unauthenticated):
        service.authenticate(ctx, issued.token)
    row = next(line for line in ok(cli("token", "list")).splitlines() if "deploy-bot" in line)
    assert "revoked" in row.split()
    refused(cli("token", "revoke", "999999"), 3, "999999")
    refused(cli("token", "revoke", "abc"), 2, "is not a valid integer")


def test_schedules_enable_disable_edit_run_now_runs_and_delete(
    cli: Any, ctx: Context, tmp_path: Path
) -> None:
    made = service.create_schedule(
        ctx, ADMIN, {"name": "nightly", "interval_s": 3600, "spec": SPEC}
    )
    assert made.enabled

    assert ok(cli("schedules", "disable", "nightly")) == "nightly disabled; next run -\n"
    assert service.get_schedule(ctx, ADMIN, "nightly").enabled is False
    out = ok(cli("schedules", "enable", made.id))  # by id as well as by name
    assert out.startswith("nightly enabled; next run 20")
    assert service.get_schedule(ctx, ADMIN, "nightly").enabled is True
    refused(cli("schedules", "disable", "no-such"), 3, "no-such")

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**SPEC, "name": "renamed-job"}))
    out = ok(cli("schedules", "edit", "nightly", "--interval", "120", "--spec", str(spec_file)))
    assert "120" in out
    edited = service.get_schedule(ctx, ADMIN, "nightly")
    assert edited.interval_s == 120 and edited.spec is not None
    assert edited.spec["name"] == "renamed-job"
    refused(cli("schedules", "edit", "nightly"), 2, "give at least one field")
    refused(cli("schedules", "edit", "nightly", "--interval", "-5"), 2, "interval")
    assert service.get_schedule(ctx, ADMIN, "nightly").interval_s == 120

    job_id, status = ok(cli("schedules", "run-now", "nightly")).split()
    assert status == "queued" and service.get_job(ctx, ADMIN, job_id).name == "renamed-job"
    refused(cli("schedules", "run-now", "no-such"), 3, "no-such")
    runs = ok(cli("schedules", "runs", "nightly")).splitlines()
    assert len(runs) == 1 and job_id in runs[0]
    assert [r.job_id for r in service.schedule_runs(ctx, ADMIN, "nightly")] == [job_id]
    refused(cli("schedules", "runs", "no-such"), 3, "no-such")

    assert ok(cli("schedules", "delete", "nightly")) == "deleted nightly\n"
    with pytest.raises(NotFoundError):
        service.get_schedule(ctx, ADMIN, "nightly")
    assert service.get_job(ctx, ADMIN, job_id).status == "queued"  # its jobs stay
    refused(cli("schedules", "delete", "nightly"), 3, "nightly")
