"""``jobsys users ...``: people who sign in to the web UI, managed on the
configured database directly (like ``jobsys token create``), as an admin."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from jobsys.auth import ROLE_RIGHTS, Principal
from jobsys.specs import DEFAULT_PROJECT

ROLES = click.Choice(list(ROLE_RIGHTS))
CLI_ADMIN = Principal("cli", "admin", "cli")


class Duration(click.ParamType):
    """A length of time as people type it: ``90d``, ``12h``, ``30m``, ``2w`` or
    plain seconds; converted to whole seconds."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        number, unit = (text[:-1], text[-1]) if text[-1:] in self.UNITS else (text, "s")
        if not number.isdigit() or int(number) == 0:
            self.fail(f"{value!r} is not a duration: give e.g. 90d, 12h, 30m, 2w or seconds")
        return int(number) * self.UNITS[unit]


DURATION = Duration()


def configured_context() -> Any:
    """The context of the configured database and broker, built when a command runs
    (so ``--help`` needs neither)."""
    from jobsys.runtime import build_context

    return build_context()


def project_option(help_text: str) -> Any:
    """``--project NAME``, read from ``JOBSYS_PROJECT`` when not given."""
    return click.option(
        "--project", envvar="JOBSYS_PROJECT", default=None, show_envvar=True, help=help_text
    )


GLOBAL = click.option(
    "--global",
    "is_global",
    is_flag=True,
    help="A global role, held in every project (admin: a global admin).",
)


def where(project: str | None, is_global: bool) -> str | None:
    """The project a role is set in (None: the global role); ``default`` unless told."""
    if is_global and project:
        raise click.UsageError("give --project or --global, not both")
    return None if is_global else project or DEFAULT_PROJECT


def in_words(role: str, project: str | None) -> str:
    return f"{role} globally" if project is None else f"{role} in {project}"


@click.group()
def users() -> None:
    """Users: name, password, and a role per project."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLES, default="operator", show_default=True)
@project_option("The project the role is in (default: default).")
@GLOBAL
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def add_command(
    name: str, role: str, project: str | None, is_global: bool, password_stdin: bool
) -> None:
    """Add a user; asks for the password unless --password-stdin."""
    from jobsys import service

    target = where(project, is_global)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    added = service.add_user(
        configured_context(), CLI_ADMIN, name=name, password=password, role=role, project=target
    )
    click.echo(f"added {added.name} ({in_words(role, target)})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    from jobsys import service

    found = service.list_users(configured_context(), CLI_ADMIN)
    if as_json:
        click.echo(json.dumps([u.to_dict() for u in found]))
        return
    for u in found:
        state = "disabled" if u.disabled else "active"
        roles = [f"{u.role} (global)"] if u.role else []
        roles += [f"{r} in {p}" for p, r in u.projects.items()]
        click.echo(f"{u.name:<24} {state:<9} {', '.join(roles) or 'no role'}")


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=ROLES)
@project_option("The project the role is in (default: default).")
@GLOBAL
def set_role_command(name: str, role: str, project: str | None, is_global: bool) -> None:
    """Set a user's role in a project, or their global role."""
    from jobsys import service

    target = where(project, is_global)
    service.update_user(configured_context(), CLI_ADMIN, name, role=role, project=target)
    click.echo(f"{name} is now {in_words(role, target)}")


@users.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password_command(name: str, password_stdin: bool) -> None:
    """Give a user a new password (asks for it unless --password-stdin)."""
    from jobsys import service

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    service.update_user(configured_context(), CLI_ADMIN, name, password=password)
    click.echo(f"new password set for {name}")


def _toggle(command: str, disabled: bool) -> None:
    @users.command(command, help=f"{command.capitalize()} a user (and their tokens).")
    @click.argument("name")
    def toggle(name: str) -> None:
        from jobsys import service

        service.update_user(configured_context(), CLI_ADMIN, name, disabled=disabled)
        click.echo(f"{name} {command}d")


_toggle("disable", True)
_toggle("enable", False)
