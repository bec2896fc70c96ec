"""``jobsys start`` and ``jobsys catalog ...``: catalog templates from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jobsys.errors import NotFoundError, SpecError


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--var k=v`` pairs; the server types each value by the template's declaration."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SpecError({"var": f"{pair!r}: give NAME=VALUE"})
        found[name.strip()] = value
    return found


@click.command()
@click.argument("template")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A variable (repeat).")
@click.option("--wait", is_flag=True, help="Wait for the job; exit 1 if it fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def start(template: str, pairs: tuple[str, ...], wait: bool, as_json: bool) -> None:
    """Start a catalog TEMPLATE with variables (via JOBSYS_URL with JOBSYS_TOKEN)."""
    from jobsys.cli.jobs import finish
    from jobsys.client.http import Client

    with Client() as client:
        finish(client.start(template, **parse_vars(pairs)), wait=wait, as_json=as_json)


@click.group()
def catalog() -> None:
    """Job templates of the catalog folder (JOBSYS_CATALOG_DIR, default jobs/)."""


@catalog.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """The templates the server has loaded, and the broken ones with their errors."""
    from jobsys.client.http import Client

    with Client() as client:
        found = client.catalog()
    if as_json:
        click.echo(json.dumps(found))
        return
    for t in found["templates"]:
        names = ", ".join(v["name"] for v in t["variables"]) or "no variables"
        click.echo(f"{t['name']:<20} {t['description']}  ({names})")
        for warning in t.get("warnings", []):
            click.echo(f"{t['name']:<20} WARNING {warning}", err=True)
    for b in found["broken"]:
        click.echo(f"{b['name']:<20} BROKEN {b['source']}: {b['error']}", err=True)


@catalog.command("show")
@click.argument("template")
def show_command(template: str) -> None:
    """One template as JSON: variables, steps, roles."""
    from jobsys.client.http import Client

    with Client() as client:
        click.echo(json.dumps(client.template(template), indent=2))


@catalog.command("reload")
@click.option("--folder", default=None, help="The catalog folder (default JOBSYS_CATALOG_DIR).")
def reload_command(folder: str | None) -> None:
    """Read the catalog folder into the configured database; exit 2 if any is broken."""
    from jobsys import service
    from jobsys.auth import Principal
    from jobsys.runtime import build_context

    found = service.reload_catalog(
        build_context(), Principal("cli", "admin", "cli"), Path(folder) if folder else None
    )
    for t in found.templates:
        click.echo(f"loaded {t.name} ({t.source})")
        for warning in t.warnings:
            click.echo(f"warning {t.name}: {warning}", err=True)
    for b in found.broken:
        click.echo(f"broken {b.name} ({b.source}): {b.error}", err=True)
    if found.broken:
        raise SystemExit(2)


@catalog.command("test")
@click.argument("template")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A variable (repeat).")
@click.option("--folder", default=None, help="The catalog folder (default JOBSYS_CATALOG_DIR).")
def test_command(template: str, pairs: tuple[str, ...], folder: str | None) -> None:
    """Check a template file and render it with variables, without running anything;
    prints the job spec it would submit (and, on stderr, what loading warns about)."""
    from jobsys.catalog import load_folder
    from jobsys.config import Settings
    from jobsys.specs import parse_job_spec

    settings = Settings.from_env()
    templates, broken = load_folder(Path(folder or settings.catalog_dir))
    for b in broken:
        if b.name == template:
            raise SpecError({"template": f"{b.source}: {b.error}"})
    chosen: Any = next((t for t in templates if t.name == template), None)
    if chosen is None:
        raise NotFoundError(f"no template {template!r} in {folder or settings.catalog_dir}")
    for warning in chosen.warnings:
        click.echo(f"warning: {warning}", err=True)
    spec = chosen.render(parse_vars(pairs))
    parse_job_spec(spec, settings)
    click.echo(json.dumps(spec, indent=2))
