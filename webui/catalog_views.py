"""Catalog pages: the templates, and a start form per template generated from
its variables (input types, defaults, help text, messages per field)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from jobsys import service
from jobsys.auth import Right
from jobsys.catalog import Template
from jobsys.errors import SpecError, Unauthenticated
from webui.api import project_arg
from webui.principal import context, needs, page_principal
from webui.views import sign_in_first

bp = Blueprint("catalog", __name__, url_prefix="/catalog")
bp.register_error_handler(Unauthenticated, sign_in_first)


@bp.get("")
@needs(Right.VIEW)
def index() -> str:
    principal = page_principal()
    found = service.list_catalog(context(), principal, project=project_arg())
    return render_template("catalog.html", catalog=found, principal=principal)


@bp.post("/reload")
@needs(Right.ADMIN)
def reload() -> Response:
    service.reload_catalog(context(), page_principal())
    return redirect(url_for("catalog.index"))


@bp.get("/<name>")
@needs(Right.VIEW)
def template(name: str) -> str:
    principal = page_principal()
    found = service.get_template(context(), principal, name, project=project_arg())
    form = {v.name: _shown(v.default) for v in found.variables if v.default is not None}
    return _start_page(found, form, {}, None)[0]


@bp.post("/<name>")
@needs(Right.START)
def start(name: str) -> Any:
    principal = page_principal()
    found = service.get_template(context(), principal, name, project=project_arg())
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    for var in found.variables:
        if var.type == "bool":
            form[var.name] = "true" if form.get(var.name) else "false"
    try:
        job = service.start_template(context(), principal, name, form, project=found.project)
    except SpecError as exc:
        errors = {k.removeprefix("variables."): v for k, v in exc.fields.items()}
        return _start_page(found, form, errors, exc.message)
    return redirect(url_for("views.job_detail", job_id=job.id))


@bp.post("/<name>/schedule")
@needs(Right.SCHEDULE)
def schedule(name: str) -> Response:
    """A schedule for the template on its default cron line, with default variables."""
    principal = page_principal()
    found = service.get_template(context(), principal, name, project=project_arg())
    if not found.schedule:
        raise SpecError({"schedule": f"template {name!r} has no default schedule"})
    body = {
        "name": name,
        "cron": found.schedule,
        "template": name,
        "variables": {},
        "project": found.project,
    }
    created = service.create_schedule(context(), principal, body)
    return redirect(url_for("schedules.detail", ref=created.id))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else ""
    return str(value)


def _start_page(
    found: Template, form: dict[str, str], errors: dict[str, str], message: str | None
) -> tuple[str, int]:
    page = render_template(
        "template.html",
        template=found,
        form=form,
        errors=errors,
        message=message,
        principal=page_principal(),
    )
    return page, 400 if errors else 200
