"""``jobsys secrets ...``: named secrets that jobs use, managed on the configured
database directly (like ``jobsys users``), as an admin. A value is read from
standard input or a hidden prompt, never from an argument: arguments end up in
shell history and in every local user's ``ps``."""

from __future__ import annotations

import json
import sys

import click

from jobsys.cli.users import CLI_ADMIN, configured_context, project_option
from jobsys.specs import DEFAULT_PROJECT

PROJECT = project_option("The project the secret belongs to (default: default).")


@click.group()
def secrets() -> None:
    """Secrets: named values jobs use without anyone seeing them."""


@secrets.command("set")
@click.argument("name")
@click.option(
    "--roles",
    default=None,
    help="Comma-separated roles that may name it in a spec they submit "
    "(default for a new secret: developer,admin; kept on a change).",
)
@PROJECT
def set_command(name: str, roles: str | None, project: str | None) -> None:
    """Create secret NAME or change its value: read from standard input when it is
    not a terminal (one value; a trailing newline is dropped), else asked for."""
    from jobsys import service

    if sys.stdin.isatty():
        value = click.prompt("Value", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    wanted = None if roles is None else [r.strip() for r in roles.split(",") if r.strip()]
    stored, created = service.set_secret(
        configured_context(),
        CLI_ADMIN,
        name,
        value,
        roles=wanted,
        project=project or DEFAULT_PROJECT,
    )
    verb = "added" if created else "changed"
    click.echo(
        f"{verb} secret {stored.name} in {stored.project} "
        f"(roles: {', '.join(stored.roles) or 'none'})"
    )


@secrets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option("Only this project's secrets (default: every project's).")
def list_command(as_json: bool, project: str | None) -> None:
    """Names, who may use them and when they changed; never the values."""
    from jobsys import service

    found = service.list_secrets(configured_context(), CLI_ADMIN, project=project)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found]))
        return
    click.echo(f"{'PROJECT':<16} {'NAME':<24} {'ROLES':<28} {'CHANGED':<17} BY")
    for s in found:
        changed = s.updated_at.strftime("%Y-%m-%d %H:%M")
        roles = ",".join(s.roles) or "-"
        click.echo(f"{s.project:<16} {s.name:<24} {roles:<28} {changed:<17} {s.updated_by}")


@secrets.command("delete")
@click.argument("name")
@PROJECT
def delete_command(name: str, project: str | None) -> None:
    """Delete secret NAME; jobs that name it fail when their step starts."""
    from jobsys import service

    where = project or DEFAULT_PROJECT
    service.delete_secret(configured_context(), CLI_ADMIN, name, project=where)
    click.echo(f"deleted secret {name} from {where}")


@secrets.command("new-key")
def new_key_command() -> None:
    """Print a new JOBSYS_SECRETS_KEY (for deployments on more than one host)."""
    from jobsys.keys import new_fernet_key

    click.echo(new_fernet_key())


__all__ = ["secrets"]
