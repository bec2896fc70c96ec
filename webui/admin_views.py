"""Admin pages: users (add, change role, disable), secrets (set, delete) and the
audit trail with filters."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from jobsys import service
from jobsys.auth import ROLE_RIGHTS, Right
from jobsys.errors import SpecError, Unauthenticated
from jobsys.service.secrets import DEFAULT_ROLES
from jobsys.specs import DEFAULT_PROJECT
from webui.api import audit_filters
from webui.principal import context, needs, page_principal
from webui.views import sign_in_first

bp = Blueprint("admin", __name__)
bp.register_error_handler(Unauthenticated, sign_in_first)


@bp.get("/users")
@needs(Right.ADMIN)
def users() -> str:
    return _users_page({}, None)[0]


@bp.post("/users")
@needs(Right.ADMIN)
def add_user() -> Any:
    form = request.form
    try:
        service.add_user(
            context(),
            page_principal(),
            name=form.get("name", ""),
            password=form.get("password", ""),
            role=form.get("role", ""),
            project=_role_place(form),
        )
    except SpecError as exc:
        return _users_page(exc.fields, exc.message)
    return redirect(url_for("admin.users"))


@bp.post("/users/<name>")
@needs(Right.ADMIN)
def update_user(name: str) -> Any:
    form = request.form
    disabled = {"disable": True, "enable": False}.get(form.get("action", ""))
    try:
        service.update_user(
            context(),
            page_principal(),
            name,
            role=form.get("role") or None,
            project=_role_place(form),
            password=form.get("password") or None,
            disabled=disabled,
        )
    except SpecError as exc:
        return _users_page({f"{name}.{k}": v for k, v in exc.fields.items()}, exc.message)
    return redirect(url_for("admin.users"))


def _role_place(form: Any) -> str | None:
    """The project a role form sets it in: the one chosen, "" for the global role,
    ``default`` when the form has no such field."""
    chosen = form.get("project", DEFAULT_PROJECT)
    return chosen or None


@bp.post("/projects")
@needs(Right.ADMIN)
def add_project() -> Any:
    try:
        service.create_project(context(), page_principal(), request.form.get("name", ""))
    except SpecError as exc:
        fields = {"project_name": exc.fields.get("name", exc.message)}
        return _users_page(fields, exc.message)
    return redirect(url_for("admin.users") + "#projects")


@bp.post("/tokens/<int:token_id>/revoke")
@needs(Right.ADMIN)
def revoke_token(token_id: int) -> Response:
    service.revoke_token(context(), page_principal(), token_id)
    return redirect(url_for("admin.users"))


@bp.get("/secrets")
@needs(Right.ADMIN)
def secrets() -> str:
    return _secrets_page({}, None)[0]


@bp.post("/secrets")
@needs(Right.ADMIN)
def set_secret() -> Any:
    form = request.form
    try:
        service.set_secret(
            context(),
            page_principal(),
            form.get("name", ""),
            form.get("value", ""),
            roles=form.getlist("roles"),
            project=form.get("project") or DEFAULT_PROJECT,
        )
    except SpecError as exc:
        return _secrets_page(exc.fields, exc.message)
    return redirect(url_for("admin.secrets"))


@bp.post("/secrets/<name>/delete")
@needs(Right.ADMIN)
def delete_secret(name: str) -> Response:
    project = request.form.get("project") or DEFAULT_PROJECT
    service.delete_secret(context(), page_principal(), name, project=project)
    return redirect(url_for("admin.secrets"))


def _secrets_page(errors: dict[str, str], message: str | None) -> tuple[str, int]:
    principal = page_principal()
    checked = request.form.getlist("roles") if request.method == "POST" else DEFAULT_ROLES
    page = render_template(
        "secrets.html",
        secrets=service.list_secrets(context(), principal),
        projects=[
            p.name
            for p in service.list_projects(context(), principal)
            if principal.can(Right.ADMIN, p.name)
        ],
        roles=list(ROLE_RIGHTS),
        checked=checked,
        errors=errors,
        message=message,
        # The value is never sent back into the form.
        form={"name": request.form.get("name", ""), "project": request.form.get("project", "")},
        principal=principal,
    )
    return page, 400 if errors else 200


@bp.get("/audit")
@needs(Right.ADMIN)
def audit() -> str:
    filters = audit_filters()
    entries, total = service.list_audit(context(), page_principal(), **filters)
    return render_template(
        "audit.html",
        entries=entries,
        total=total,
        filters=request.args,
        page=filters["page"],
        per_page=filters["per_page"],
        principal=page_principal(),
    )


def _users_page(errors: dict[str, str], message: str | None) -> tuple[str, int]:
    principal = page_principal()
    page = render_template(
        "users.html",
        users=service.list_users(context(), principal),
        tokens=service.list_tokens(context(), principal),
        projects=service.list_projects(context(), principal),
        roles=list(ROLE_RIGHTS),
        errors=errors,
        message=message,
        form=request.form,
        principal=principal,
    )
    return page, 400 if errors else 200
