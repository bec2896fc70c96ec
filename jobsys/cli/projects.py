"""``jobsys projects ...``: projects and their members, managed on the configured
database directly (like ``jobsys users``), as a global admin."""

from __future__ import annotations

import json

import click

from jobsys.cli.users import CLI_ADMIN, ROLES, configured_context


@click.group()
def projects() -> None:
    """Projects: a team's jobs, templates, schedules, secrets and tokens."""


@projects.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the project is for.")
def add_command(name: str, description: str) -> None:
    """Add a project (lower-case letters, digits, '_' and '-')."""
    from jobsys import service

    service.create_project(configured_context(), CLI_ADMIN, name, description=description)
    click.echo(f"added project {name}")


@projects.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Every project with its members and their roles."""
    from jobsys import service

    found = service.list_projects(configured_context(), CLI_ADMIN)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in found]))
        return
    for p in found:
        members = ", ".join(f"{u} ({r})" for u, r in (p.members or {}).items())
        click.echo(f"{p.name:<24} {members or 'no members'}")


@projects.command("grant")
@click.argument("name")
@click.argument("user")
@click.argument("role", type=ROLES)
def grant_command(name: str, user: str, role: str) -> None:
    """Give USER the ROLE in project NAME (replacing the one they had there)."""
    from jobsys import service

    service.set_member(configured_context(), CLI_ADMIN, name, user, role)
    click.echo(f"{user} is now {role} in {name}")


@projects.command("revoke")
@click.argument("name")
@click.argument("user")
def revoke_command(name: str, user: str) -> None:
    """Take USER's role in project NAME away."""
    from jobsys import service

    service.remove_member(configured_context(), CLI_ADMIN, name, user)
    click.echo(f"{user} is no longer a member of {name}")
