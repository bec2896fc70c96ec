"""The package layout: imports run one way (entry points -> service ->
domain, broker, store; nothing back up), and the names users and operators
type keep working after the modules moved into their folders."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from celery import Celery
from celery.beat import Scheduler

ROOT = Path(__file__).parents[2]

#: Each room of the code and the rooms it may import from (its own included).
DOMAIN = {
    "jobsys.auth",
    "jobsys.catalog",
    "jobsys.config",
    "jobsys.datadir",
    "jobsys.envelope",
    "jobsys.errors",
    "jobsys.fastjson",
    "jobsys.keys",
    "jobsys.oidc_roles",
    "jobsys.schedule_spec",
    "jobsys.signing",
    "jobsys.specs",
    "jobsys.states",
    "jobsys.step_secrets",
    "jobsys.storable",
    "jobsys.timing",
}
WIRING = {
    "beat_schedule",
    "jobsys.celery_app",
    "jobsys.context",
    "jobsys.flower",
    "jobsys.runtime",
    "jobsys.scheduler",
    "jobsys.stack",
}
MAY_IMPORT = {
    "domain": {"domain"},
    "broker": {"domain", "broker"},
    "store": {"domain", "store"},
    "client": {"domain", "client"},
    "wiring": {"domain", "broker", "store", "wiring", "service"},
    "service": {"domain", "broker", "store", "wiring", "service"},
    "entry": {"domain", "broker", "store", "wiring", "service", "client", "entry"},
}


def room(module: str) -> str:
    """Where a jobsys module lives: the package ``jobsys`` itself is the public
    face (the client and spec names) and counts as the client's room."""
    if module in DOMAIN:
        return "domain"
    if module in WIRING:
        return "wiring"
    for prefix, name in (
        ("jobsys.broker", "broker"),
        ("jobsys.store", "store"),
        ("jobsys.service", "service"),
        ("jobsys.client", "client"),
        ("jobsys.cli", "entry"),
        ("jobsys.testing", "entry"),
        ("webui", "entry"),
        ("workers", "entry"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return name
    if module == "jobsys":
        return "client"
    raise AssertionError(f"{module} is in no room: add it to DOMAIN, WIRING or a folder")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports_of(path: Path) -> set[str]:
    """The jobsys modules a file imports, at any depth (imports inside
    functions count: a late import is still a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            # a relative import would slip past the rooms: we write none
            found.add(f"relative import in {path.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            # "from jobsys import service" imports the module jobsys.service;
            # "from jobsys import Client" imports from the package itself
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
    ours = ("jobsys", "webui", "workers", "beat_schedule")
    return {
        m for m in found if m.startswith("relative") or (m.split(".")[0] in ours and _is_module(m))
    }


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def sources() -> list[Path]:
    files = [*ROOT.joinpath("jobsys").rglob("*.py"), ROOT / "beat_schedule.py"]
    files += [*ROOT.joinpath("webui").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]
    return sorted(p for p in files if "versions" not in p.parts)


def test_every_import_runs_one_way() -> None:
    wrong = []
    for path in sources():
        importer = module_name(path)
        mine = room(importer)
        for imported in imports_of(path):
            theirs = "relative" if imported.startswith("relative") else room(imported)
            if theirs not in MAY_IMPORT[mine]:  # "relative" is in none
                wrong.append(f"{importer} ({mine}) imports {imported} ({theirs})")
    assert wrong == []


def test_the_layout_check_sees_a_wrong_way_import(tmp_path: Path) -> None:
    """The check above would catch a store module reaching up into the service."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from jobsys import service\n    from jobsys.store import db\n"
        "from ..service import jobs\n"
    )
    assert imports_of(bad) >= {"jobsys.service", "jobsys.store.db", "relative import in bad.py"}
    assert room("jobsys.service") not in MAY_IMPORT[room("jobsys.store.models")]
    assert room("jobsys.cli.main") not in MAY_IMPORT[room("jobsys.service.jobs")]
    assert room("jobsys.broker.events") not in MAY_IMPORT[room("jobsys.specs")]


def test_the_public_names_still_import() -> None:
    from jobsys import Client, Executor
    from jobsys.celery_app import app
    from jobsys.client import Client as SameClient
    from jobsys.scheduler import DatabaseScheduler

    assert Client is SameClient and Executor.__module__ == "jobsys.client.executor"
    assert isinstance(app, Celery)
    assert issubclass(DatabaseScheduler, Scheduler)


def test_the_console_script_is_the_cli() -> None:
    from jobsys.cli.main import main

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "jobsys"]
    assert script.load() is main
    run = subprocess.run(
        [str(Path(sys.executable).parent / "jobsys"), "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0 and "schedules" in run.stdout
    also = subprocess.run([sys.executable, "-m", "jobsys.cli", "--help"], capture_output=True)
    assert also.returncode == 0


def test_celery_finds_the_app_and_the_beat_scheduler_by_their_names() -> None:
    # what `celery -A jobsys.celery_app ... beat -S jobsys.scheduler:DatabaseScheduler` loads
    from celery.utils.imports import symbol_by_name

    assert isinstance(symbol_by_name("jobsys.celery_app:app"), Celery)
    assert symbol_by_name("jobsys.scheduler:DatabaseScheduler").__name__ == "DatabaseScheduler"
    run = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "jobsys.celery_app", "report"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("where", ["pyproject", "code"])
def test_alembic_finds_the_revisions_where_it_is_told(where: str) -> None:
    from jobsys.store import schema

    if where == "pyproject":
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["alembic"]
        location = config["script_location"]
    else:
        location = schema.SCRIPT_LOCATION
    alembic = Config()
    alembic.set_main_option("script_location", location)
    script = ScriptDirectory.from_config(alembic)
    assert script.get_current_head() == schema.head()
    assert Path(script.dir) == ROOT / "jobsys" / "store" / "migrations"
