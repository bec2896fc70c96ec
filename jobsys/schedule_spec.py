"""Parsing and checking a schedule from a JSON body, a PATCH or a web form; pure.

The job spec inside a schedule is checked by the service with the same parser
as a submitted job (it needs the settings' image allow-list); everything else
about a schedule is checked here, each problem named by its field.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobsys.errors import SpecError
from jobsys.storable import check_json
from jobsys.timing import CatchUp, Timing, parse_timing

#: Catch-up never reaches further back than this, whatever a schedule asks.
MAX_CATCH_UP_WINDOW_S = 30 * 24 * 3600
DEFAULT_CATCH_UP_WINDOW_S = 3600

FIELDS = frozenset(
    {
        "name",
        "description",
        "cron",
        "interval_s",
        "timezone",
        "spec",
        "template",
        "variables",
        "catch_up",
        "catch_up_window_s",
        "overlap",
        "enabled",
    }
)


class Overlap(enum.StrEnum):
    """What a tick does while the schedule's previous job has not finished."""

    SKIP = "skip"  # record the tick as skipped, start nothing
    ALLOW = "allow"  # start another job anyway


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    description: str
    timing: Timing
    #: The job spec to run, or None when the schedule starts a catalog template.
    spec: dict[str, Any] | None
    template: str | None
    variables: dict[str, Any]
    catch_up: CatchUp
    catch_up_window_s: int
    overlap: Overlap
    enabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "cron": self.timing.cron,
            "interval_s": self.timing.interval_s,
            "timezone": self.timing.timezone,
            "spec": self.spec,
            "template": self.template,
            "variables": self.variables,
            "catch_up": self.catch_up.value,
            "catch_up_window_s": self.catch_up_window_s,
            "overlap": self.overlap.value,
            "enabled": self.enabled,
        }


def parse_schedule(data: Any) -> ScheduleSpec:
    """A whole schedule (create); SpecError lists every bad field at once."""
    if not isinstance(data, Mapping):
        raise SpecError({"body": "send a JSON object with 'name', 'cron' or 'interval_s', 'spec'"})
    problems: dict[str, str] = {}
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        problems["body"] = f"unknown fields {', '.join(unknown)}; use {', '.join(sorted(FIELDS))}"
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        problems["name"] = "give a non-empty name of at most 200 characters"
    description = data.get("description", "") or ""
    if not isinstance(description, str) or len(description) > 2000:
        problems["description"] = "give text of at most 2000 characters"
    timing = _timing(data, problems)
    spec = data.get("spec")
    template = data.get("template")
    variables = data.get("variables") or {}
    if (spec is None) == (template is None):
        problems["spec"] = (
            "give either the job spec to run (an object with 'name' and 'steps') "
            "or a catalog 'template' with its 'variables', not both"
        )
    elif spec is not None and not isinstance(spec, Mapping):
        problems["spec"] = "give the job spec to run: an object with 'name' and 'steps'"
    elif template is not None and (not isinstance(template, str) or not template.strip()):
        problems["template"] = "give the name of a catalog template"
    if not isinstance(variables, Mapping):
        problems["variables"] = "give an object of variable names to values"
    catch_up = _choice(data.get("catch_up", CatchUp.SKIP.value), CatchUp, "catch_up", problems)
    window = data.get("catch_up_window_s", DEFAULT_CATCH_UP_WINDOW_S)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        problems["catch_up_window_s"] = "give a whole number of seconds, 0 or more"
    elif window > MAX_CATCH_UP_WINDOW_S:
        problems["catch_up_window_s"] = f"at most {MAX_CATCH_UP_WINDOW_S} seconds (30 days)"
    overlap = _choice(data.get("overlap", Overlap.SKIP.value), Overlap, "overlap", problems)
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        problems["enabled"] = "give true or false"
    if problems:
        raise SpecError(problems)
    assert timing is not None and catch_up is not None and overlap is not None
    return ScheduleSpec(
        name=str(name).strip(),
        description=description.strip(),
        timing=timing,
        spec=None if spec is None else dict(spec),
        template=None if template is None else str(template).strip(),
        variables=dict(variables),
        catch_up=CatchUp(catch_up),
        catch_up_window_s=int(window),
        overlap=Overlap(overlap),
        enabled=enabled,
    )


def merge_patch(current: ScheduleSpec, patch: Any) -> ScheduleSpec:
    """The schedule after a PATCH: given fields replace the current ones, and giving
    ``cron`` drops the interval (and the other way round)."""
    if not isinstance(patch, Mapping) or not patch:
        raise SpecError({"body": f"send an object with some of: {', '.join(sorted(FIELDS))}"})
    merged = current.to_dict()
    if "template" in patch and "spec" not in patch:
        merged["spec"] = None
    if "spec" in patch and "template" not in patch:
        merged["template"], merged["variables"] = None, {}
    if "cron" in patch and "interval_s" not in patch:
        merged["interval_s"] = None
    if "interval_s" in patch and "cron" not in patch:
        merged["cron"] = None
    merged.update(patch)
    return parse_schedule(merged)


def _timing(data: Mapping[str, Any], problems: dict[str, str]) -> Timing | None:
    cron = data.get("cron")
    if cron is not None and not isinstance(cron, str):
        problems["cron"] = "give the cron line as a string, e.g. '*/15 * * * *'"
        return None
    try:
        return parse_timing(
            cron=cron, interval_s=data.get("interval_s"), timezone=data.get("timezone") or "UTC"
        )
    except SpecError as exc:
        problems.update(exc.fields)
        return None


def _choice(
    value: Any, kind: type[enum.StrEnum], name: str, problems: dict[str, str]
) -> str | None:
    allowed = [member.value for member in kind]
    if value not in allowed:
        problems[name] = f"{repr(value)[:60]} is not one of {', '.join(allowed)}"
        return None
    return str(value)


def schedule_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The JSON body a schedule form means: blank fields left out, the job spec
    read from its JSON text, the checkbox as a bool."""
    data: dict[str, Any] = {
        key: form[key].strip()
        for key in ("name", "description", "cron", "timezone", "catch_up", "overlap", "template")
        if form.get(key, "").strip()
    }
    for key in ("interval_s", "catch_up_window_s"):
        raw = form.get(key, "").strip()
        if raw:
            try:
                data[key] = int(raw)
            except ValueError as exc:
                raise SpecError({key: f"give a whole number of seconds, not {raw!r}"}) from exc
    data["enabled"] = form.get("enabled") in {"on", "true", "1", "yes"}
    if data.get("template"):
        raw_vars = form.get("variables", "").strip()
        try:
            data["variables"] = json.loads(raw_vars) if raw_vars else {}
        except ValueError as exc:
            raise SpecError({"variables": f"the variables are not valid JSON: {exc}"}) from exc
        check_json(raw_vars, data["variables"], "variables")
        return data
    raw_spec = form.get("spec", "").strip()
    if raw_spec:
        try:
            data["spec"] = json.loads(raw_spec)
        except ValueError as exc:
            raise SpecError({"spec": f"the job spec is not valid JSON: {exc}"}) from exc
        check_json(raw_spec, data["spec"], "spec")
    return data
