"""Mutation testing, one module at a time: ``make mutate`` (not part of CI).

For each module in ``[tool.jobsys.mutate]`` of pyproject.toml this runs mutmut
with only that module mutated and only the fast unit tests named for it, in its
own folder (``test-artifacts/mutmut/<module>/``), so each module's results
and cache stay apart and a run never mutates the working tree. mutmut then
runs, for each mutant, only those of the named tests that execute the mutated
function. A module with a ``sample`` runs that many of its mutants, drawn with
a fixed seed (the same sample every time), and says so.

    python scripts/mutate.py                      # every module
    python scripts/mutate.py jobsys/auth.py       # one
    python scripts/mutate.py --max-children 2 --root /path/to/other/checkout
    python scripts/mutate.py --all jobsys/specs.py   # no sampling

It prints, per module: mutants (or sampled/total), killed, survived,
timeout, suspicious (and no tests), and the percentage killed; the surviving
mutants' names follow, for ``mutmut show NAME`` in that module's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
#: What the mutated copy needs besides the tests (mutmut copies ``tests/`` itself).
LINKED = ("jobsys", "webui", "workers", "beat_schedule.py", "tests")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(name: str, values: dict[str, object]) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def prepare(root: Path, work: Path, module: str, tests: list[str], shared: dict, pytest_ini: dict):
    """``work`` holds links to the code and a pyproject.toml for this module alone."""
    work.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = work / name
        if link.is_symlink() or link.exists():
            link.unlink()
        if (root / name).exists():
            link.symlink_to(root / name)
    mutmut = dict(shared)
    mutmut["source_paths"] = ["jobsys", "webui", "workers"]
    mutmut["only_mutate"] = [module]
    mutmut["pytest_add_cli_args_test_selection"] = tests
    (work / "pyproject.toml").write_text(
        _table("tool.mutmut", mutmut) + "\n" + _table("tool.pytest.ini_options", pytest_ini)
    )


def mutmut(work: Path, *args: str) -> int:
    """mutmut in ``work``, its output in ``work/mutmut.log``; PYTHONPATH is dropped so
    the original code cannot be imported in place of the mutated copy."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exe = Path(sys.executable).with_name("mutmut")
    with open(work / "mutmut.log", "w") as log:
        return subprocess.call([str(exe), *args], cwd=work, env=env, stdout=log, stderr=log)


def generate(work: Path) -> None:
    """Write the mutants (and their names) without testing them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "from mutmut.__main__ import copy_src_dir, copy_also_copy_files, "
        "setup_source_paths, store_lines_covered_by_tests, create_mutants\n"
        "import os; os.makedirs('mutants', exist_ok=True)\n"
        "copy_src_dir(); copy_also_copy_files(); setup_source_paths()\n"
        "store_lines_covered_by_tests(); create_mutants(1)\n"
    )
    with open(work / "generate.log", "w") as log:
        subprocess.check_call(
            [sys.executable, "-c", code], cwd=work, env=env, stdout=log, stderr=log
        )


def results(work: Path, module: str) -> dict[str, int | None]:
    meta = work / "mutants" / (module + ".meta")
    return json.loads(meta.read_text())["exit_code_by_key"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="paths as in [tool.jobsys.mutate]")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout to mutate")
    parser.add_argument("--config", type=Path, default=HERE / "pyproject.toml")
    parser.add_argument("--out", type=Path, default=None, help="default: ROOT/test-artifacts")
    parser.add_argument("--keep", action="store_true", help="reuse earlier results")
    parser.add_argument("--all", action="store_true", help="every mutant, even if sampled")
    args = parser.parse_args()

    from mutmut.stats import status_by_exit_code

    project = tomllib.loads(args.config.read_text())
    shared = project["tool"]["mutmut"]
    table = project["tool"]["jobsys"]["mutate"]
    seed = table.get("seed", 15)
    pytest_ini = project["tool"]["pytest"]["ini_options"]
    modules = args.modules or list(table["modules"])
    root = args.root.resolve()
    out = (args.out or root / "test-artifacts").resolve() / "mutmut"

    rows = []
    for module in modules:
        spec = table["modules"][module]
        tests = [t for t in spec["tests"] if (root / t).exists()]
        work = out / module.replace("/", "_").removesuffix(".py")
        if not args.keep and (work / "mutants").exists():
            shutil.rmtree(work / "mutants")
        prepare(root, work, module, tests, shared, pytest_ini)
        print(f"== {module}: tests {' '.join(tests)}", flush=True)
        names: list[str] = []
        total = None
        if spec.get("sample") and not args.all:
            generate(work)
            every = sorted(results(work, module))
            total = len(every)
            if spec["sample"] < total:
                names = sorted(random.Random(seed).sample(every, spec["sample"]))
                print(f"   sampled {len(names)} of its {total} mutants (seed {seed})")
        started = time.monotonic()
        code = mutmut(work, "run", "--max-children", str(args.max_children), *names)
        minutes = (time.monotonic() - started) / 60
        print(f"   mutmut exit {code} after {minutes:.1f} min; log: {work / 'mutmut.log'}")
        found = results(work, module)
        if names:
            found = {name: found[name] for name in names}
        counts = Counter(status_by_exit_code[code] for code in found.values())
        survivors = sorted(
            n for n, code in found.items() if status_by_exit_code[code] == "survived"
        )
        rows.append((module, len(found), total, counts, survivors, work))

    print()
    print(
        f"{'module':28} {'mutants':>11} {'killed':>7} {'survived':>9} {'timeout':>8} "
        f"{'suspicious':>11} {'no tests':>9} {'killed %':>9}"
    )
    for module, count, total, c, _, _ in rows:
        shown = f"{count}/{total}" if total and count < total else str(count)
        pct = 100.0 * c["killed"] / count if count else 0.0
        print(
            f"{module:28} {shown:>11} {c['killed']:>7} {c['survived']:>9} {c['timeout']:>8} "
            f"{c['suspicious'] + c['segfault']:>11} {c['no tests']:>9} {pct:>8.1f}%"
        )
    for module, _, _, _, survivors, work in rows:
        if survivors:
            print(f"\n{module}: {len(survivors)} survived (cd {work} && mutmut show NAME)")
            for name in survivors:
                print(f"    {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
