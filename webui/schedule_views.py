"""Schedule pages: the list with a form for a new schedule, and one schedule
with its edit form, actions and run history. Same service calls as the API;
no JavaScript needed."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from jobsys import service
from jobsys.auth import Principal, Right
from jobsys.errors import SpecError, Unauthenticated
from jobsys.schedule_spec import Overlap, schedule_from_form
from jobsys.timing import ALIASES, CatchUp
from webui.principal import context, needs, page_principal
from webui.views import sign_in_first

bp = Blueprint("schedules", __name__, url_prefix="/schedules")
bp.register_error_handler(Unauthenticated, sign_in_first)

NEW_FORM = {
    "interval_s": "",
    "cron": "*/15 * * * *",
    "timezone": "UTC",
    "catch_up": CatchUp.SKIP.value,
    "catch_up_window_s": "3600",
    "overlap": Overlap.SKIP.value,
    "enabled": "on",
    "spec": json.dumps(
        {
            "name": "hello",
            "steps": [
                {"kind": "docker", "image": "jobsys/busybox:local", "command": ["echo", "hi"]}
            ],
        },
        indent=2,
    ),
}


@bp.get("")
@needs(Right.VIEW)
def index() -> str:
    return _list_page(page_principal(), NEW_FORM, {}, None)[0]


@bp.post("")
@needs(Right.SCHEDULE)
def create() -> Any:
    principal = page_principal()
    form = _form()
    try:
        data = schedule_from_form(form)
        if form.get("project"):  # the new-schedule form's project (a schedule stays in it)
            data["project"] = form["project"]
        created = service.create_schedule(context(), principal, data)
    except SpecError as exc:
        return _list_page(principal, form, exc.fields, exc.message)
    return redirect(url_for("schedules.detail", ref=created.id))


@bp.get("/<ref>")
@needs(Right.VIEW)
def detail(ref: str) -> str:
    principal = page_principal()
    schedule = service.get_schedule(context(), principal, ref)
    return _detail_page(principal, schedule, _form_of(schedule), {}, None)[0]


@bp.post("/<ref>")
@needs(Right.SCHEDULE)
def update(ref: str) -> Any:
    principal = page_principal()
    form = _form()
    schedule = service.get_schedule(context(), principal, ref)
    try:
        patch = schedule_from_form(form)
        if schedule.spec and form.get("spec", "").strip() == _spec_text(schedule.spec).strip():
            patch.pop("spec", None)  # unchanged: keep the stored (signed) spec
        service.update_schedule(context(), principal, ref, patch)
    except SpecError as exc:
        return _detail_page(principal, schedule, form, exc.fields, exc.message)
    return redirect(url_for("schedules.detail", ref=schedule.id))


@bp.post("/<ref>/enable")
@needs(Right.SCHEDULE)
def enable(ref: str) -> Response:
    service.update_schedule(context(), page_principal(), ref, {"enabled": True})
    return _back(ref)


@bp.post("/<ref>/disable")
@needs(Right.SCHEDULE)
def disable(ref: str) -> Response:
    service.update_schedule(context(), page_principal(), ref, {"enabled": False})
    return _back(ref)


@bp.post("/<ref>/run-now")
@needs(Right.RERUN)
def run_now(ref: str) -> Response:
    job = service.run_schedule_now(context(), page_principal(), ref)
    return redirect(url_for("views.job_detail", job_id=job.id))


@bp.post("/<ref>/delete")
@needs(Right.SCHEDULE)
def delete(ref: str) -> Response:
    service.delete_schedule(context(), page_principal(), ref)
    return redirect(url_for("schedules.index"))


def _back(ref: str) -> Response:
    target = request.form.get("next")
    if target == "list":
        return redirect(url_for("schedules.index"))
    return redirect(url_for("schedules.detail", ref=ref))


def _form() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}


def _spec_text(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2)


def _form_of(schedule: service.ScheduleInfo) -> dict[str, str]:
    return {
        "name": schedule.name,
        "description": schedule.description,
        "cron": schedule.cron or "",
        "interval_s": "" if schedule.interval_s is None else str(schedule.interval_s),
        "timezone": schedule.timezone,
        "catch_up": schedule.catch_up,
        "catch_up_window_s": str(schedule.catch_up_window_s),
        "overlap": schedule.overlap,
        "enabled": "on" if schedule.enabled else "",
        "spec": _spec_text(schedule.spec) if schedule.spec else "",
        "template": schedule.template or "",
        "variables": json.dumps(schedule.variables) if schedule.variables else "",
    }


def _errors(fields: dict[str, str]) -> dict[str, str]:
    """Form fields by name: ``spec.steps[0].image`` is shown under ``spec``."""
    shown: dict[str, str] = {}
    for name, message in fields.items():
        key = name.split(".")[0]
        shown[key] = f"{shown[key]}; {message}" if key in shown else message
    if "body" in shown:
        shown["name"] = shown.pop("body")
    return shown


def _form_page(
    template: str,
    principal: Principal,
    form: dict[str, str],
    fields: dict[str, str],
    message: str | None,
    **extra: Any,
) -> tuple[str, int]:
    """A page with the schedule form, 400 when it comes back with errors."""
    page = render_template(
        template,
        form=form,
        errors=_errors(fields),
        message=message,
        principal=principal,
        catch_ups=[c.value for c in CatchUp],
        overlaps=[o.value for o in Overlap],
        aliases=list(ALIASES),
        **extra,
    )
    return page, 400 if fields else 200


def _list_page(
    principal: Principal, form: dict[str, str], fields: dict[str, str], message: str | None
) -> tuple[str, int]:
    schedules = service.list_schedules(context(), principal)
    return _form_page("schedules.html", principal, form, fields, message, schedules=schedules)


def _detail_page(
    principal: Principal,
    schedule: service.ScheduleInfo,
    form: dict[str, str],
    fields: dict[str, str],
    message: str | None,
) -> tuple[str, int]:
    runs = service.schedule_runs(context(), principal, schedule.id, limit=100)
    return _form_page(
        "schedule.html", principal, form, fields, message, schedule=schedule, runs=runs
    )
