"""The ``jobsys`` command line. Each command parses, makes one service (or
client) call and prints; exit codes: 0 ok, 1 job failed, 2 bad input,
3 not found, 4 auth, 5 server, broker or database unreachable."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any, NoReturn

import click

from jobsys.cli import jobs as cli_jobs
from jobsys.cli.catalog import catalog, start
from jobsys.cli.db import db
from jobsys.cli.projects import projects
from jobsys.cli.schedules import schedules
from jobsys.cli.secrets import secrets
from jobsys.cli.users import DURATION, GLOBAL, project_option, users
from jobsys.config import Settings
from jobsys.errors import (
    AuthError,
    ConfigError,
    DatabaseUnavailable,
    DispatchError,
    JobsysError,
    NotFoundError,
    SpecError,
    StateError,
)

EXIT_CODES: list[tuple[type[JobsysError], int]] = [
    (SpecError, 2),
    (ConfigError, 2),
    (NotFoundError, 3),
    (StateError, 2),
    (AuthError, 4),
    (DispatchError, 5),
    (DatabaseUnavailable, 5),
]


def fail(exc: JobsysError) -> NoReturn:
    click.echo(f"error: {exc.message}", err=True)
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            sys.exit(code)
    sys.exit(1)


class JobsysGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JobsysError as exc:
            fail(exc)


@click.group(cls=JobsysGroup)
@click.option(
    "--project",
    default=None,
    metavar="NAME",
    help="The project to work in (JOBSYS_PROJECT): where jobs and schedules go, where "
    "names are looked up, what lists show. Default: default, or your only project.",
)
@click.pass_context
def main(ctx: click.Context, project: str | None) -> None:
    """jobsys: Docker steps and mapped Python functions on Celery and Redis."""
    if project:
        # Every client this command makes reads it (jobsys.config.client_project),
        # and so do --project options; put back when the command ends.
        before = os.environ.get("JOBSYS_PROJECT")
        os.environ["JOBSYS_PROJECT"] = project
        ctx.call_on_close(lambda: _restore("JOBSYS_PROJECT", before))


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@main.command()
def run() -> None:
    """Run the whole stack locally: web, workers, beat, Flower (and Redis if needed)."""
    from jobsys import service
    from jobsys.runtime import build_context
    from jobsys.stack import data_dir, flower_basic_auth, redacted, run_stack

    settings = Settings.from_env()
    data = data_dir(settings)
    token_file = data / "admin.token"
    ctx = build_context(settings)
    issued = service.bootstrap_token(ctx, token_file)
    token_note = (
        f"created an admin token, saved in {token_file}:\n    {issued.token}"
        if issued
        else f"admin token: see {token_file} (or make one: jobsys token create --role admin)"
    )
    banner = (
        f"\njobsys is running\n  web UI and API  http://{settings.web_host}:{settings.web_port}\n"
        f"  Flower          http://{settings.web_host}:{settings.web_port}/flower/ (signed in),"
        f" or http://{settings.web_host}:{settings.flower_port}/flower/"
        f" (basic auth {flower_basic_auth(settings)})\n"
        f"  database        {redacted(settings.database_url)}\n"
        f"  broker          {redacted(settings.redis_url)}\n"
        f"  function steps  {_isolation_line(settings)}\n"
        f"  {token_note}\nPress Ctrl-C to stop.\n"
    )
    sys.exit(run_stack(settings, banner))


def _isolation_line(settings: Settings) -> str:
    """Where function steps' code will run, as the workers will find it."""
    from workers.sandbox.isolation import probe

    found = probe(settings)
    if found.state == "on":
        return f"isolated: {found.why}"
    if found.state == "off":
        return f"NOT isolated: {found.why}"
    return f"cannot be isolated here, and will fail: {found.why}"


def _job_action(name: str, help_text: str) -> None:
    @main.command(name=name, help=help_text)
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
    def command(job_id: str, as_json: bool) -> None:
        from jobsys.client.http import Client

        with Client() as client:
            job = getattr(client, name)(job_id)
        click.echo(json.dumps(job.data) if as_json else f"{job.id} {job.status}")


@main.command()
@click.argument("job_id")
@click.option("--tail", type=int, default=None, help="Only the last N stored lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing lines until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (ts, stream...).")
def logs(job_id: str, tail: int | None, follow: bool, as_json: bool) -> None:
    """Print a job's log lines (via JOBSYS_URL with JOBSYS_TOKEN)."""
    from jobsys.client.http import Client

    with Client() as client:
        job = client.job(job_id)
        lines = job.logs(follow=True) if follow else job.logs(tail=tail)
        for entry in lines:
            if as_json:
                click.echo(json.dumps(entry))
            else:
                click.echo(entry["line"], err=entry["stream"] == "stderr")


_job_action("cancel", "Cancel a queued or running job (via JOBSYS_URL with JOBSYS_TOKEN).")
_job_action("rerun", "Run a job again from the start as a new job; prints the new job.")
_job_action("resume", "Continue a failed or cancelled job where it stopped, as a new job.")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option(
    "--role",
    default="developer",
    show_default=True,
    type=click.Choice(["viewer", "operator", "developer", "admin"]),
)
@click.option("--name", default=None, help="A label for the token (default: the role).")
@click.option("--user", default=None, help="The user the token acts for (at most their role).")
@project_option(
    "The project the token acts in (default: default; an admin token without one is global)."
)
@GLOBAL
@click.option(
    "--expires-in",
    "expires_in_s",
    type=DURATION,
    default=None,
    help="Refuse the token after this long: 90d, 12h, 30m, 2w (default: never).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_create(
    role: str,
    name: str | None,
    user: str | None,
    project: str | None,
    is_global: bool,
    expires_in_s: int | None,
    as_json: bool,
) -> None:
    """Create a token in the configured database and print it (it is shown only once)."""
    from jobsys import service
    from jobsys.cli.users import CLI_ADMIN
    from jobsys.runtime import build_context

    if is_global and project:
        raise click.UsageError("give --project or --global, not both")
    issued = service.create_token(
        build_context(),
        CLI_ADMIN,
        name=name or user or role,
        role=role,
        user=user,
        expires_in_s=expires_in_s,
        project=project,
        global_token=is_global,
    )
    if as_json:
        click.echo(json.dumps(issued.to_dict()))
    else:
        click.echo(issued.token)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(as_json: bool) -> None:
    """The tokens in the configured database (never the tokens themselves)."""
    from jobsys import service
    from jobsys.cli.users import CLI_ADMIN
    from jobsys.runtime import build_context

    found = service.list_tokens(build_context(), CLI_ADMIN)
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in found]))
        return
    click.echo(
        f"{'ID':>5}  {'KEY ID':<12}  {'ROLE':<10} {'PROJECT':<16} {'NAME':<24} {'STATE':<8} "
        f"{'LAST USED':<17} EXPIRES"
    )
    for t in found:
        click.echo(
            f"{t.id:>5}  {t.key_id:<12}  {t.role:<10} {t.project or '(global)':<16} "
            f"{t.name:<24} {t.state:<8} {_minute(t.last_used_at):<17} "
            f"{_minute(t.expires_at) if t.expires_at else 'never'}"
        )


def _minute(moment: datetime | None) -> str:
    """A UTC time to the minute (last use is only kept that exactly), or a dash."""
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token by the id ``jobsys token list`` shows; it stops working at once."""
    from jobsys import service
    from jobsys.cli.users import CLI_ADMIN
    from jobsys.runtime import build_context

    service.revoke_token(build_context(), CLI_ADMIN, token_id)
    click.echo(f"revoked token {token_id}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """celery worker for the jobsys app; extra arguments go to Celery (e.g. -Q docker)."""
    _celery(["worker", *ctx.args])


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def beat(ctx: click.Context) -> None:
    """celery beat for the jobsys app; extra arguments go to Celery."""
    _celery(["beat", *ctx.args])


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def flower(ctx: click.Context) -> None:
    """Flower against the jobsys app, with the same basic auth as ``jobsys run``
    (or FLOWER_BASIC_AUTH); extra arguments go to Flower."""
    import os

    from jobsys.stack import flower_basic_auth

    os.environ["FLOWER_BASIC_AUTH"] = flower_basic_auth(Settings.from_env())
    os.execv(sys.executable, [sys.executable, "-m", "jobsys.flower", *ctx.args])


@main.command()
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
def web(host: str | None, port: int | None) -> None:
    """The web app and API under gunicorn."""
    import os

    settings = Settings.from_env()
    bind = f"{host or settings.web_host}:{port or settings.web_port}"
    from jobsys.stack import web_command

    command = web_command(bind)
    os.execv(command[0], command)


def _celery(args: list[str]) -> None:
    import os

    os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "jobsys.celery_app", *args])


cli_jobs.register(main)
main.add_command(schedules)
main.add_command(start)
main.add_command(catalog)
main.add_command(users)
main.add_command(projects)
main.add_command(secrets)
main.add_command(db)

if __name__ == "__main__":
    main()
