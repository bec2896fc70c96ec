"""``jobsys jobs|show|submit|map``: jobs from the command line, through the API
(``JOBSYS_URL`` with ``JOBSYS_TOKEN``) like any other client.

Read commands print a table for people and ``--json`` for scripts; ``--wait``
shows a progress bar on stderr and exits 1 when the job did not complete.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

import click
import yaml

from jobsys.client.http import Client, Job, UntrustedResult
from jobsys.errors import SpecError
from jobsys.states import JobStatus


def finish(job: Job, *, wait: bool, as_json: bool, timeout: float | None = None) -> None:
    """Print a submitted job (after waiting for it, if asked); exit 1 unless it completed."""
    if wait:
        job = wait_with_progress(job, timeout)
    click.echo(json.dumps(job.data) if as_json else f"{job.id} {job.status}")
    if wait and job.status != JobStatus.COMPLETED:
        if job.error and not as_json:
            click.echo(f"error: {job.error}", err=True)
        raise SystemExit(1)


def wait_with_progress(job: Job, timeout: float | None = None) -> Job:
    """Wait for ``job``, with a progress bar of its tasks on stderr when that is a terminal."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done, total = job.progress
    with click.progressbar(
        length=max(1, total),
        label=f"{job.id[:8]} {job.data.get('name', '')}"[:40],
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
    ) as bar:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                # Returns the moment the job ends; a short wait only to move the bar.
                job.wait(PROGRESS_S if left is None else max(0.0, min(PROGRESS_S, left)))
                break
            except TimeoutError:
                if left is not None and left <= PROGRESS_S:
                    raise SystemExit(f"job {job.id} still {job.status} after {timeout} s") from None
            now_done, total = job.progress
            bar.length = max(1, total)
            bar.update(now_done - done)
            done = now_done
        bar.update(job.progress[0] - done)
    return job


#: Seconds between progress bar updates while ``--wait`` waits.
PROGRESS_S = 1.0


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


@click.command()
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), default=None)
@click.option("--owner", default=None)
@click.option("--template", default=None)
@click.option("--tag", default=None)
@click.option("-q", "--search", "q", default=None, help="A job id, or the start of a name.")
@click.option("--since", default=None, help="ISO time, e.g. 2026-11-23T10:00.")
@click.option("--until", default=None, help="ISO time.")
@click.option(
    "--sort", type=click.Choice(["-created", "created", "-finished", "name"]), default=None
)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs(limit: int, page: int, as_json: bool, **filters: Any) -> None:
    """List jobs, newest first, with the web UI's filters."""
    wanted = {k: v for k, v in filters.items() if v}
    with Client() as client:
        found = client.jobs(page=page, per_page=limit, **wanted)
    if as_json:
        click.echo(json.dumps([j.data for j in found]))
        return
    rows = [
        [
            j.id[:12],
            j.status,
            f"{j.progress[0]}/{j.progress[1]}",
            str(j.data.get("owner") or ""),
            _when(j.data.get("created_at")),
            str(j.data.get("name") or ""),
            ",".join(j.data.get("tags") or []),
        ]
        for j in found
    ]
    if not rows:
        click.echo("no jobs match", err=True)
        return
    click.echo(_table(rows, ["ID", "STATUS", "TASKS", "OWNER", "CREATED (UTC)", "NAME", "TAGS"]))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the job with its tasks).")
def show(job_id: str, as_json: bool) -> None:
    """One job: its facts, steps and tasks."""
    with Client() as client:
        job = client.job(job_id)
        tasks = job.tasks()
    if as_json:
        click.echo(json.dumps({**job.data, "tasks": tasks}))
        return
    data = job.data
    facts = [
        ("id", data["id"]),
        ("project", data.get("project", "default")),
        ("name", data["name"]),
        ("status", data["status"]),
        ("owner", data["owner"]),
        ("tags", ", ".join(data.get("tags") or []) or "-"),
        ("template", data.get("template") or "-"),
        ("progress", "{done}/{total} tasks".format(**data["progress"])),
        ("created", _when(data["created_at"])),
        ("started", _when(data["started_at"])),
        ("finished", _when(data["finished_at"])),
        ("rerun of", data.get("rerun_of") or "-"),
    ]
    if data.get("waiting"):
        waiting = data["waiting"]
        facts.insert(4, ("waiting", f"{waiting['reason']}: {waiting.get('detail', '')}"))
    if data.get("error"):
        facts.append(("error", data["error"]))
    click.echo("\n".join(f"{k:<10} {v}" for k, v in facts))
    click.echo()
    steps = [
        [
            str(s["position"] + 1),
            s["kind"],
            s["status"],
            "{done}/{total}".format(**s["progress"]),
            "-" if s["duration_s"] is None else f"{s['duration_s']:.2f}s",
            s["summary"][:60],
        ]
        for s in data["steps"]
    ]
    click.echo(_table(steps, ["STEP", "KIND", "STATUS", "TASKS", "TOOK", "WHAT"]))
    if tasks:
        click.echo()
        rows = [
            [
                t["id"][:12],
                str(t["chunk"]),
                t["state"],
                t["worker"] or "-",
                str(t["attempt"]),
                "-" if t["duration_s"] is None else f"{t['duration_s']:.2f}s",
            ]
            for t in tasks
        ]
        click.echo(_table(rows, ["TASK", "CHUNK", "STATE", "WORKER", "ATTEMPT", "TOOK"]))


def _wait_options(fn: Any) -> Any:
    fn = click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")(fn)
    fn = click.option("--timeout", type=float, default=None, help="Give up waiting after N s.")(fn)
    return click.option("--wait", is_flag=True, help="Wait for the job; exit 1 if it fails.")(fn)


@click.group()
def submit() -> None:
    """Submit a job: a Docker command, or a spec file."""


@submit.command("docker", context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, required=True)
@click.option("--name", default=None, help="The job's name (default: the image).")
@click.option("--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="Repeatable.")
@click.option("--timeout-s", type=float, default=3600, show_default=True)
@click.option("--retries", type=int, default=0, show_default=True)
@click.option("--tag", "tags", multiple=True, help="A tag for the job (repeatable).")
@click.option(
    "--not-before", default=None, metavar="TIME", help="Hold it until then: 2026-12-02T03:00Z."
)
@click.option("--delay-s", type=float, default=None, help="Hold it this many seconds.")
@_wait_options
def submit_docker(
    image: str,
    command: tuple[str, ...],
    name: str | None,
    env_pairs: tuple[str, ...],
    timeout_s: float,
    retries: int,
    tags: tuple[str, ...],
    not_before: str | None,
    delay_s: float | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Run COMMAND in IMAGE: ``jobsys submit docker busybox -- sh -c 'echo hi'``."""
    # Options end at IMAGE (so COMMAND keeps its own flags), and then click keeps
    # the conventional ``--`` as an argument: it separates, it is not the command.
    if command[:1] == ("--",):
        command = command[1:]
    if not command:
        raise SpecError({"command": "give the command to run after the image (IMAGE -- CMD ...)"})
    env = {}
    for pair in env_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError({"env": f"{pair!r}: give NAME=VALUE"})
        env[key] = value
    with Client() as client:
        job = client.run_docker(
            image,
            list(command),
            env=env,
            timeout_s=timeout_s,
            retries=retries,
            name=name,
            tags=list(tags),
            not_before=not_before,
            delay_s=delay_s,
        )
        finish(job, wait=wait, as_json=as_json, timeout=timeout)


@submit.command("spec")
@click.argument("file", type=click.File("r"))
@click.option(
    "--idempotency-key",
    default=None,
    metavar="KEY",
    help="Run the spec once per KEY: repeating the command within 24 h prints the "
    "first run's job instead of starting another.",
)
@_wait_options
def submit_spec(
    file: IO[str],
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a job spec from a YAML or JSON FILE (``-`` reads stdin)."""
    spec = _load(file.read(), file.name)
    with Client() as client:
        job = client.submit_spec(spec, idempotency_key=idempotency_key)
        finish(job, wait=wait, as_json=as_json, timeout=timeout)


@click.command("map")
@click.argument("function")
@click.option(
    "--items",
    "items_file",
    type=click.File("r"),
    required=True,
    help="A JSON array, or JSON lines (one item per line); - reads stdin.",
)
@click.option("--chunk-size", type=click.IntRange(1), default=None)
@click.option("--tolerate-failures", is_flag=True, help="Complete even when items fail.")
@click.option("--name", default=None)
@click.option("--tag", "tags", multiple=True, help="A tag for the job (repeatable).")
@click.option("--results", is_flag=True, help="With --wait: print each item's result as JSON.")
@_wait_options
def map_command(
    function: str,
    items_file: IO[str],
    chunk_size: int | None,
    tolerate_failures: bool,
    name: str | None,
    tags: tuple[str, ...],
    results: bool,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Map an importable FUNCTION (``package.module:name``, installed on the workers)
    over the items of a file: ``jobsys map math:sqrt --items numbers.json --wait``."""
    if ":" not in function:
        raise SpecError({"function": f"{function!r}: give package.module:name"})
    items = _items(items_file)
    step: dict[str, Any] = {
        "kind": "function",
        "function": function,
        "items": items,
        "tolerate_failures": tolerate_failures,
    }
    if chunk_size:
        step["chunk_size"] = chunk_size
    spec = {"name": name or f"map {function}", "steps": [step], "tags": list(tags)}
    with Client() as client:
        job = client.submit_spec(spec)
        if not (results and wait):
            finish(job, wait=wait, as_json=as_json, timeout=timeout)
            return
        job = wait_with_progress(job, timeout)
        for outcome in job.results(errors="return"):
            click.echo(json.dumps(outcome, default=_as_json))
        if job.status != JobStatus.COMPLETED:
            raise SystemExit(1)


def _as_json(value: Any) -> Any:
    """A result JSON cannot carry: an untrusted pickle as the worker's repr of it,
    anything else (a set, an object) as its repr."""
    if isinstance(value, UntrustedResult):
        return value.repr if value.repr is not None else repr(value)
    return repr(value)


def _load(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise SpecError({"file": f"{source}: not valid YAML or JSON: {exc}"}) from exc


def _items(file: IO[str]) -> list[Any]:
    text = file.read()
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            found = json.loads(text)
        else:
            found = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise SpecError(
            {"items": f"{file.name}: give a JSON array or one JSON value per line ({exc})"}
        ) from exc
    if not found:
        raise SpecError({"items": f"{file.name} holds no items"})
    return list(found)


def register(main: click.Group) -> None:
    for command in (jobs, show, submit, map_command):
        main.add_command(command)
