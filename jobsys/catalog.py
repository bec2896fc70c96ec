"""Job templates: ready jobs with ``{{variable}}`` placeholders, read from a
catalog folder (one folder per template holding ``job.yaml`` or ``job.json``).
A template folder at the top (``jobs/<template>/job.yaml``) belongs to the
``default`` project; one a level down belongs to the project its parent folder
names (``jobs/<project>/<template>/job.yaml``).

Pure apart from reading the folder. Rendering is safe by construction:
placeholders are replaced inside the already-parsed structure, one string at a
time, never in the YAML text, so a value can change a string, number or flag
but cannot add a step, a field or an item; a placeholder that is a whole
string becomes the variable's typed value (``timeout_s: "{{timeout}}"`` gives
an int). Step kinds and function import paths may not hold placeholders at
all: a variable must never choose which code runs. Every variable is checked
(type, required, pattern, range, choices) before anything is substituted.

That structure ends at a string, though: inside ``["sh", "-c", "echo {{m}}"]``
the shell parses the value again, and ``'; rm -rf /; '`` runs. So
``{{ m | shell }}`` quotes a value as one shell word (``shlex.quote``), and
loading a template warns about every placeholder of free text inside a shell
command without it (``Template.warnings``, shown on the Catalog page and by
``jobsys catalog test``).

Variable patterns run on RE2 (google-re2), whose matching time is linear in
the value: a pattern such as ``(a+)+$`` cannot be made to backtrack for hours
by a crafted value, and patterns RE2 cannot run (backreferences, lookaround)
are refused when the template loads. Values are at most ``MAX_VALUE_CHARS``
long, and a request may name only a few variables the template does not have
(``EXTRA_VARIABLES``), so a request cannot grow the error it gets back.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2
import yaml

from jobsys.errors import SpecError
from jobsys.specs import DEFAULT_PROJECT, PROJECT_NAME, TAG

#: ``{{ name }}`` or ``{{ name | filter }}``.
PLACEHOLDER = re.compile(
    r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*)?\}\}"
)
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
TYPES = ("string", "int", "float", "bool", "choice")
ACTIONS = ("start", "stop", "restart")
FILES = ("job.yaml", "job.yml", "job.json")
TEMPLATE_FIELDS = {"name", "description", "variables", "steps", "schedule", "roles", "tags"}
VARIABLE_FIELDS = {
    "type",
    "description",
    "default",
    "required",
    "pattern",
    "min",
    "max",
    "choices",
}
#: Fields a placeholder may never stand in (nor inside): they decide what code runs,
#: and which secrets it gets (a template may use any secret because its author
#: chose which: a starter's variable must not choose instead).
FIXED_FIELDS = ("kind", "function", "secrets")
#: Longest ``range`` a template may expand its items to.
MAX_RANGE = 1_000_000
#: Longest value (in characters) any variable takes, checked before it is parsed or matched.
MAX_VALUE_CHARS = 10_000
#: Names a request may send beyond the template's own variables (each still gets its
#: "no such variable" message); more is refused with one message, not one per name.
EXTRA_VARIABLES = 10
#: What ``{{ name | filter }}`` does to the value's text.
FILTERS: dict[str, Callable[[str], str]] = {"shell": shlex.quote}
#: Programs whose ``-c`` argument is a shell script (by base name).
SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "busybox"})


class TemplateError(Exception):
    """Raised when a template file cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Variable:
    name: str
    type: str = "string"
    description: str = ""
    default: Any = None
    required: bool = False
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, raw: Any) -> Any:
        """The value as its type, or ValueError saying what to give instead."""
        if isinstance(raw, str) and len(raw) > MAX_VALUE_CHARS:
            raise ValueError(f"give at most {MAX_VALUE_CHARS:,} characters")
        value = self._coerce(raw)
        if self.type in ("int", "float"):
            if self.min is not None and value < self.min:
                raise ValueError(f"give a number of at least {_num(self.min)}")
            if self.max is not None and value > self.max:
                raise ValueError(f"give a number of at most {_num(self.max)}")
        if self.type == "string":
            if len(value) > MAX_VALUE_CHARS:
                raise ValueError(f"give at most {MAX_VALUE_CHARS:,} characters")
            if self.pattern and not linear_pattern(self.pattern).fullmatch(value):
                raise ValueError(f"must match the pattern {self.pattern}")
        if self.type == "choice" and value not in self.choices:
            raise ValueError(f"choose one of {', '.join(self.choices)}")
        return value

    def _coerce(self, raw: Any) -> Any:
        if self.type == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "on", "1"):
                return True
            if isinstance(raw, str) and raw.strip().lower() in ("false", "no", "off", "0", ""):
                return False
            raise ValueError("give true or false")
        if self.type == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("give a whole number")
            try:
                return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
            except (TypeError, ValueError):
                raise ValueError("give a whole number") from None
        if self.type == "float":
            try:
                number = float(raw) if not isinstance(raw, bool) else math.nan
            except (TypeError, ValueError):
                raise ValueError("give a number") from None
            if not math.isfinite(number):
                raise ValueError("give a finite number")
            return number
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ValueError("give text")
        return str(raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "default": self.default,
            "required": self.required,
            "pattern": self.pattern,
            "min": self.min,
            "max": self.max,
            "choices": list(self.choices),
        }


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    variables: tuple[Variable, ...]
    #: The steps as written, placeholders and all.
    steps: tuple[dict[str, Any], ...]
    schedule: str | None = None
    #: action -> roles allowed; an action missing here is open to every role with its right.
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""
    tags: tuple[str, ...] = ()
    #: What loading found risky but allowed (an unquoted placeholder in a shell script).
    warnings: tuple[str, ...] = ()
    #: The project it belongs to: its folder's parent, or ``default`` at the top.
    project: str = DEFAULT_PROJECT

    def values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every variable checked and typed; SpecError names each bad or missing one."""
        if not isinstance(given, Mapping):
            raise SpecError({"variables": "send an object of variable names to values"})
        known = {v.name for v in self.variables}
        if len(given) > len(known) + EXTRA_VARIABLES:
            # One message, not one per name: 300,000 unknown names once made a
            # 45 MB answer from a 700 KB request.
            raise SpecError(
                {
                    "variables": f"{self.name!r} takes {len(known)} variables "
                    f"({', '.join(sorted(known)) or 'none'}); this request names "
                    f"{len(given):,}: send only the template's variables"
                }
            )
        problems: dict[str, str] = {}
        for unknown in sorted(set(given) - known):
            problems[unknown] = (
                f"{self.name!r} has no variable {unknown[:100]!r}; "
                f"it has {', '.join(sorted(known))}"
                if known
                else f"{self.name!r} takes no variables"
            )
        values: dict[str, Any] = {}
        for var in self.variables:
            raw = given.get(var.name, var.default)
            if raw is None or (raw == "" and var.type != "string"):
                if var.required or var.default is None:
                    problems[var.name] = f"required: {var.description or 'give a value'}"
                continue
            try:
                values[var.name] = var.check(raw)
            except ValueError as exc:
                problems[var.name] = str(exc)
        if problems:
            raise SpecError(problems)
        return values

    def render(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The job spec for these variables, ready for ``parse_job_spec``."""
        values = self.values(given)
        steps = [_expand_items(_substitute(step, values)) for step in self.steps]
        return {"name": self.name, "steps": steps, "tags": list(self.tags)}

    def allows(self, action: str, role: str) -> bool:
        allowed = self.roles.get(action)
        return allowed is None or role in allowed

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "description": self.description,
            "variables": [v.to_dict() for v in self.variables],
            "steps": list(self.steps),
            "schedule": self.schedule,
            "roles": {action: list(roles) for action, roles in self.roles.items()},
            "tags": list(self.tags),
            "source": self.source,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Broken:
    """A template that did not load, with the file and the reason."""

    name: str
    source: str
    error: str
    project: str = DEFAULT_PROJECT

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "source": self.source,
            "error": self.error,
        }


def load_folder(folder: Path) -> tuple[list[Template], list[Broken]]:
    """Every template under ``folder``, of every project; one broken file never
    stops the others. A folder with no template file of its own is a project's
    folder when its name is a project name, and its template folders are read."""
    templates: list[Template] = []
    broken: list[Broken] = []
    if not folder.is_dir():
        return templates, broken
    for directory in _folders(folder):
        if _template_file(directory) is not None:
            _load(directory, DEFAULT_PROJECT, templates, broken)
        elif PROJECT_NAME.match(directory.name):
            for inner in _folders(directory):
                if _template_file(inner) is not None:
                    _load(inner, directory.name, templates, broken)
    return templates, broken


def _folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _template_file(directory: Path) -> Path | None:
    return next((directory / n for n in FILES if (directory / n).is_file()), None)


def _load(directory: Path, project: str, templates: list[Template], broken: list[Broken]) -> None:
    source = _template_file(directory)
    assert source is not None
    try:
        template = parse_template(_read(source), directory.name, str(source))
        templates.append(replace(template, project=project))
    except TemplateError as exc:
        broken.append(Broken(directory.name, str(source), str(exc), project))


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot parse {path.name}: {exc}") from exc


def parse_template(data: Any, folder_name: str, source: str = "") -> Template:
    """A template from its file's content; TemplateError says what is wrong."""
    if not isinstance(data, Mapping):
        raise TemplateError("the file must hold a mapping with 'steps' (and 'variables')")
    unknown = sorted(set(data) - TEMPLATE_FIELDS)
    if unknown:
        raise TemplateError(f"unknown fields {', '.join(unknown)}")
    name = data.get("name", folder_name)
    if not isinstance(name, str) or not NAME.match(name):
        raise TemplateError(
            f"name {name!r}: use lower-case letters, digits, '.', '_' and '-' (at most 100)"
        )
    variables = tuple(_variable(key, spec) for key, spec in (data.get("variables") or {}).items())
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        raise TemplateError("'steps' must be a non-empty list of step mappings")
    declared = {v.name for v in variables}
    for i, step in enumerate(steps):
        for fixed in FIXED_FIELDS:
            if fixed in step and PLACEHOLDER.search(json.dumps(step[fixed])):
                raise TemplateError(f"steps[{i}].{fixed} may not hold a placeholder")
        env = step.get("env")
        for key, value in env.items() if isinstance(env, dict) else ():
            if isinstance(value, dict) and PLACEHOLDER.search(json.dumps(value)):
                raise TemplateError(
                    f"steps[{i}].env.{key} names its secret by a placeholder: name it as it is"
                )
        found = list(PLACEHOLDER.finditer(json.dumps(step)))
        used = {m.group(1) for m in found}
        if used - declared:
            missing = ", ".join(sorted(used - declared))
            raise TemplateError(f"steps[{i}] uses undeclared variables: {missing}")
        for m in found:
            if m.group(2) is not None and m.group(2) not in FILTERS:
                raise TemplateError(
                    f"steps[{i}]: {m.group(0)} uses the unknown filter {m.group(2)!r}; "
                    f"the filters are {', '.join(FILTERS)}"
                )
    schedule = data.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise TemplateError("'schedule' must be a cron line such as '0 3 * * *'")
    return Template(
        name=name,
        description=str(data.get("description") or ""),
        variables=variables,
        steps=tuple(dict(s) for s in steps),
        schedule=schedule,
        roles=_roles(data.get("roles")),
        source=source,
        tags=_tags(data.get("tags")),
        warnings=tuple(shell_warnings(steps, {v.name: v for v in variables})),
    )


def _variable(name: Any, spec: Any) -> Variable:
    if not isinstance(name, str) or not VARIABLE_NAME.fullmatch(name):
        raise TemplateError(f"variable {name!r}: use letters, digits and '_'")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise TemplateError(f"variable {name}: give a mapping (type, default, ...)")
    unknown = sorted(set(spec) - VARIABLE_FIELDS)
    if unknown:
        raise TemplateError(f"variable {name}: unknown fields {', '.join(unknown)}")
    kind = spec.get("type", "string")
    if kind not in TYPES:
        raise TemplateError(f"variable {name}: type {kind!r} is not one of {', '.join(TYPES)}")
    choices = tuple(str(c) for c in spec.get("choices") or ())
    if kind == "choice" and not choices:
        raise TemplateError(f"variable {name}: a choice needs 'choices'")
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            linear_pattern(str(pattern))
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise TemplateError(
                f"variable {name}: the pattern {pattern!r} cannot be used ({reason}). "
                "Patterns run on RE2, whose matching time stays linear in the value: "
                "no backreferences (\\1) or lookaround ((?=...), (?<=...))"
            ) from exc
    variable = Variable(
        name=name,
        type=kind,
        description=str(spec.get("description") or ""),
        default=spec.get("default"),
        required=bool(spec.get("required", False)),
        pattern=None if pattern is None else str(pattern),
        min=_bound(name, spec.get("min")),
        max=_bound(name, spec.get("max")),
        choices=choices,
    )
    if variable.default is not None:
        try:
            variable.check(variable.default)
        except ValueError as exc:
            raise TemplateError(f"variable {name}: default {variable.default!r}: {exc}") from exc
    return variable


def _bound(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TemplateError(f"variable {name}: min and max must be numbers")
    return float(value)


def _tags(data: Any) -> tuple[str, ...]:
    """The template's fixed tags, checked now so a bad one breaks loading, not starting."""
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(t, str) and TAG.match(t) for t in data):
        raise TemplateError("'tags' must be a list of tags such as [nightly, team=data]")
    return tuple(data)


def _roles(data: Any) -> dict[str, tuple[str, ...]]:
    from jobsys.auth import ROLE_RIGHTS

    if data is None:
        return {}
    if not isinstance(data, Mapping) or set(data) - set(ACTIONS):
        raise TemplateError(f"'roles' maps {', '.join(ACTIONS)} to lists of roles")
    roles: dict[str, tuple[str, ...]] = {}
    for action, names in data.items():
        if not isinstance(names, list) or any(n not in ROLE_RIGHTS for n in names):
            raise TemplateError(
                f"roles.{action}: give a list of roles from {', '.join(ROLE_RIGHTS)}"
            )
        roles[action] = tuple(names)
    return roles


@lru_cache(maxsize=512)
def linear_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2; ``re2.error`` if RE2 cannot run it."""
    options = re2.Options()
    options.log_errors = False  # the error is raised (and reported) instead
    return re2.compile(pattern, options=options)


def shell_warnings(steps: list[dict[str, Any]], variables: Mapping[str, Variable]) -> Iterator[str]:
    """A warning for each placeholder inside a shell script that a value could break out of.

    A script is the argument after ``-c`` (or ``-ec``, ``-lc``...) of a shell
    in a list command, or a whole command given as one string (jobsys splits it
    like a shell line). A placeholder is safe there with ``| shell`` outside any
    quotes, or when its variable is a number, a flag, or a choice of plain words.
    """
    for i, step in enumerate(steps):
        for where, script, split_only in _scripts(step.get("command")):
            for m, quoted in _placeholders(script):
                variable = variables.get(m.group(1))
                if m.group(2) == "shell":
                    if quoted:
                        yield (
                            f"steps[{i}].{where}: {m.group(0)} sits inside quotes; put it "
                            "outside them, as '| shell' adds its own"
                        )
                elif variable is not None and not _shell_safe(variable):
                    what = "a command line" if split_only else "a shell command"
                    yield (
                        f"steps[{i}].{where}: {m.group(0)} is inside {what} without '| shell', "
                        "so a value holding quotes, ';' or '$(...)' "
                        f"{'changes its arguments' if split_only else 'runs as shell code'}; "
                        f"write {{{{ {m.group(1)} | shell }}}} (outside quotes)"
                    )


def _scripts(command: Any) -> Iterator[tuple[str, str, bool]]:
    """(where, script, split only) for each part of a command a shell parses."""
    if isinstance(command, str):
        yield "command", command, True
        return
    if not isinstance(command, list):
        return
    for k, arg in enumerate(command):
        if not (isinstance(arg, str) and posixpath.basename(arg) in SHELLS):
            continue
        for j in range(k + 1, len(command) - 1):
            flag = command[j]
            if not (isinstance(flag, str) and flag.startswith("-") and not flag.startswith("--")):
                break
            if "c" in flag[1:] and isinstance(command[j + 1], str):
                yield f"command[{j + 1}]", command[j + 1], False
                break


def _placeholders(script: str) -> Iterator[tuple[re.Match[str], bool]]:
    """Each placeholder in a shell script, and whether it sits inside quotes.
    Follows '...' and "..." with backslash escapes; enough for telling."""
    quote = ""
    i = 0
    while i < len(script):
        m = PLACEHOLDER.match(script, i)
        if m:
            yield m, bool(quote)
            i = m.end()
            continue
        char = script[i]
        if char == "\\" and quote != "'":
            i += 2
            continue
        if quote == "" and char in "'\"":
            quote = char
        elif char == quote:
            quote = ""
        i += 1


def _shell_safe(variable: Variable) -> bool:
    """Whether every value the variable can take is one plain shell word."""
    if variable.type in ("int", "float", "bool"):
        return True
    if variable.type == "choice":
        return all(shlex.quote(c) == c for c in variable.choices)
    return False


def _substitute(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node.strip())
        if whole and whole.group(2) is None:
            return values.get(whole.group(1))
        return PLACEHOLDER.sub(lambda m: _filtered(m, values), node)
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    return node


def _filtered(m: re.Match[str], values: Mapping[str, Any]) -> str:
    text = _text(values.get(m.group(1)))
    return text if m.group(2) is None else FILTERS[m.group(2)](text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _expand_items(step: dict[str, Any]) -> dict[str, Any]:
    """``items: {range: [start, stop]}`` becomes the list of those numbers."""
    items = step.get("items")
    if not (isinstance(items, dict) and set(items) == {"range"}):
        return step
    bounds = items["range"]
    if (
        not isinstance(bounds, list)
        or len(bounds) not in (1, 2, 3)
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
    ):
        raise SpecError({"items": "range takes [stop], [start, stop] or [start, stop, step]"})
    numbers = range(*bounds)
    if len(numbers) > MAX_RANGE:
        raise SpecError({"items": f"a range gives at most {MAX_RANGE} items"})
    return {**step, "items": list(numbers)}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
