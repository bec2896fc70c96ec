"""``jobsys schedules ...``: the schedule commands, through the client (JOBSYS_URL,
JOBSYS_TOKEN) like the other job commands. A schedule is named by id or name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jobsys.errors import SpecError


@click.group()
def schedules() -> None:
    """Cron and interval schedules kept in the jobsys database."""


def _client() -> Any:
    from jobsys.client.http import Client

    return Client()


def _read_spec(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SpecError({"spec": f"cannot read {path}: {exc.strerror}"}) from exc
    except json.JSONDecodeError as exc:
        raise SpecError({"spec": f"{path} is not valid JSON: {exc}"}) from exc
    if not isinstance(data, dict):
        raise SpecError({"spec": f"{path} must hold a JSON object with 'name' and 'steps'"})
    return data


def _show(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(schedule))
        return
    last = schedule.get("last_run") or {}
    for label, value in [
        ("id", schedule["id"]),
        ("name", schedule["name"]),
        ("when", schedule["timing"]),
        ("enabled", "yes" if schedule["enabled"] else "no"),
        ("next run", schedule["next_fire_at"] or "-"),
        ("last run", f"{last.get('fired_at')} {last.get('outcome')}" if last else "never"),
        ("catch-up", schedule["catch_up"]),
        ("overlap", schedule["overlap"]),
    ]:
        click.echo(f"{label:<9} {value}")


def _options(func: Any) -> Any:
    """The fields shared by create and edit."""
    for option in reversed(
        [
            click.option("--cron", default=None, help="5-field cron line or @hourly-style alias."),
            click.option("--interval", "interval_s", type=int, default=None, help="Seconds."),
            click.option("--timezone", default=None, help="IANA zone for the cron line."),
            click.option("--spec", "spec_file", default=None, help="Job spec JSON file."),
            click.option("--catch-up", type=click.Choice(["skip", "once", "all"]), default=None),
            click.option("--catch-up-window", "catch_up_window_s", type=int, default=None),
            click.option("--overlap", type=click.Choice(["skip", "allow"]), default=None),
            click.option("--description", default=None),
            click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON."),
        ]
    ):
        func = option(func)
    return func


def _fields(**given: Any) -> dict[str, Any]:
    spec_file = given.pop("spec_file", None)
    fields = {k: v for k, v in given.items() if v is not None}
    if spec_file:
        fields["spec"] = _read_spec(spec_file)
    return fields


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Every schedule with its next and last run."""
    with _client() as client:
        found = client.schedules()
    if as_json:
        click.echo(json.dumps(found))
        return
    rows = [("NAME", "WHEN", "NEXT RUN (UTC)", "LAST RUN", "STATE")]
    for s in found:
        last = s.get("last_run")
        rows.append(
            (
                s["name"],
                s["timing"],
                (s["next_fire_at"] or "-")[:19],
                f"{last['fired_at'][:19]} {last['outcome']}" if last else "never",
                "enabled" if s["enabled"] else "disabled",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@schedules.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(ref: str, as_json: bool) -> None:
    """One schedule."""
    with _client() as client:
        _show(client.schedule(ref), as_json)


@schedules.command("create")
@click.argument("name")
@_options
@click.option("--disabled", is_flag=True, help="Create it disabled.")
def create_command(name: str, as_json: bool, disabled: bool, **given: Any) -> None:
    """Create a schedule: NAME, --cron or --interval, and --spec FILE."""
    fields = _fields(**given)
    if "spec" not in fields:
        raise SpecError({"spec": "give the job to run with --spec FILE.json"})
    spec = fields.pop("spec")
    with _client() as client:
        created = client.create_schedule(name, spec, enabled=not disabled, **fields)
    _show(created, as_json)


@schedules.command("edit")
@click.argument("ref")
@_options
@click.option("--name", default=None, help="Rename it.")
def edit_command(ref: str, as_json: bool, **given: Any) -> None:
    """Change some fields of a schedule; the rest stay."""
    fields = _fields(**given)
    if not fields:
        raise SpecError({"options": "give at least one field to change (see --help)"})
    with _client() as client:
        _show(client.update_schedule(ref, **fields), as_json)


def _toggle(name: str, enabled: bool) -> None:
    @schedules.command(name, help=f"{name.capitalize()} a schedule.")
    @click.argument("ref")
    def command(ref: str) -> None:
        with _client() as client:
            found = client.update_schedule(ref, enabled=enabled)
        click.echo(f"{found['name']} {name}d; next run {found['next_fire_at'] or '-'}")


_toggle("enable", True)
_toggle("disable", False)


@schedules.command("delete")
@click.argument("ref")
def delete_command(ref: str) -> None:
    """Delete a schedule and its run history (its jobs stay)."""
    with _client() as client:
        client.delete_schedule(ref)
    click.echo(f"deleted {ref}")


@schedules.command("run-now")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def run_now_command(ref: str, as_json: bool) -> None:
    """Start the schedule's job now; prints the job. The next tick does not move."""
    with _client() as client:
        job = client.run_schedule_now(ref)
    click.echo(json.dumps(job.data) if as_json else f"{job.id} {job.status}")


@schedules.command("runs")
@click.argument("ref")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_command(ref: str, limit: int, as_json: bool) -> None:
    """The schedule's runs, newest first: tick, trigger, outcome, job."""
    with _client() as client:
        found = client.schedule_runs(ref, limit=limit)
    if as_json:
        click.echo(json.dumps(found))
        return
    for run in found:
        click.echo(
            f"{run['tick'][:19]}  {run['trigger']:<8} {run['outcome']:<9} "
            f"late {run['lateness_s']:.3f}s  {run['job_id'] or run['note'] or ''}"
        )
