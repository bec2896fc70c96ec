"""The JSON API. Each route: authenticate, parse, one service call, jsonify."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from jobsys import service
from jobsys.errors import SpecError
from webui.principal import api_principal, context
from webui.stream import event_response

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> Any:
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise SpecError({"body": "send a JSON object in the request body"})
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError({"body": f"malformed JSON: {exc}"}) from exc
    except RecursionError as exc:
        raise SpecError({"body": "JSON nested too deeply"}) from exc


def int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SpecError({name: f"give a whole number, not {raw!r}"}) from exc


@bp.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    principal = api_principal()
    return _created(service.submit_job(context(), principal, json_body()))


@bp.get("/jobs")
def list_jobs() -> Response:
    page = service.list_jobs(
        context(),
        api_principal(),
        status=request.args.get("status") or None,
        page=int_arg("page", 1) or 1,
        per_page=int_arg("per_page", 50) or 50,
    )
    return jsonify(page.to_dict())


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return jsonify(service.get_job(context(), api_principal(), job_id).to_dict())


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    return jsonify(service.cancel_job(context(), api_principal(), job_id).to_dict())


@bp.post("/jobs/<job_id>/rerun")
def rerun_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
    return _created(service.rerun_job(context(), api_principal(), job_id))


@bp.post("/jobs/<job_id>/resume")
def resume_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
    return _created(service.resume_job(context(), api_principal(), job_id))


def _created(job: service.JobInfo) -> tuple[Response, int, dict[str, str]]:
    return jsonify(job.to_dict()), 202, {"Location": url_for("api.get_job", job_id=job.id)}


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    return event_response(api_principal(), job_id)


@bp.get("/jobs/<job_id>/tasks")
def job_tasks(job_id: str) -> Response:
    tasks = service.job_tasks(context(), api_principal(), job_id)
    return jsonify({"job_id": job_id, "tasks": [t.to_dict() for t in tasks]})


@bp.get("/jobs/<job_id>/logs")
def job_logs(job_id: str) -> Response:
    logs = service.job_logs(context(), api_principal(), job_id, tail=int_arg("tail", None))
    return jsonify({"job_id": job_id, "logs": [entry.to_dict() for entry in logs]})


@bp.get("/jobs/<job_id>/results")
def job_results(job_id: str) -> Response:
    return jsonify(service.job_results(context(), api_principal(), job_id))


@bp.get("/stats")
def stats() -> Response:
    return jsonify(service.job_stats(context(), api_principal()))


@bp.get("/workers")
def workers() -> Response:
    found = service.list_workers(context(), api_principal())
    return jsonify({"workers": [w.to_dict() for w in found]})


@bp.post("/tokens")
def create_token() -> tuple[Response, int]:
    body = json_body()
    if not isinstance(body, dict):
        raise SpecError({"body": "send an object with 'name' and 'role'"})
    issued = service.create_token(
        context(), api_principal(), name=str(body.get("name", "")), role=str(body.get("role", ""))
    )
    return jsonify({"name": issued.name, "role": issued.role, "token": issued.token}), 201


@bp.post("/schedules")
def create_schedule() -> tuple[Response, int, dict[str, str]]:
    created = service.create_schedule(context(), api_principal(), json_body())
    location = url_for("api.get_schedule", ref=created.id)
    return jsonify(created.to_dict()), 201, {"Location": location}


@bp.get("/schedules")
def list_schedules() -> Response:
    found = service.list_schedules(context(), api_principal())
    return jsonify({"schedules": [s.to_dict() for s in found]})


@bp.get("/schedules/<ref>")
def get_schedule(ref: str) -> Response:
    return jsonify(service.get_schedule(context(), api_principal(), ref).to_dict())


@bp.patch("/schedules/<ref>")
def update_schedule(ref: str) -> Response:
    updated = service.update_schedule(context(), api_principal(), ref, json_body())
    return jsonify(updated.to_dict())


@bp.delete("/schedules/<ref>")
def delete_schedule(ref: str) -> tuple[str, int]:
    service.delete_schedule(context(), api_principal(), ref)
    return "", 204


@bp.get("/schedules/<ref>/runs")
def schedule_runs(ref: str) -> Response:
    found = service.schedule_runs(context(), api_principal(), ref, limit=int_arg("limit", 50) or 50)
    return jsonify({"runs": [r.to_dict() for r in found]})


@bp.post("/schedules/<ref>/run-now")
def run_schedule_now(ref: str) -> tuple[Response, int, dict[str, str]]:
    return _created(service.run_schedule_now(context(), api_principal(), ref))


@bp.get("/catalog")
def list_catalog() -> Response:
    return jsonify(service.list_catalog(context(), api_principal()).to_dict())


@bp.post("/catalog/reload")
def reload_catalog() -> Response:
    return jsonify(service.reload_catalog(context(), api_principal()).to_dict())


@bp.get("/catalog/<name>")
def get_template(name: str) -> Response:
    return jsonify(service.get_template(context(), api_principal(), name).to_dict())


@bp.post("/catalog/<name>/start")
def start_template(name: str) -> tuple[Response, int, dict[str, str]]:
    variables = _variables(json_body())
    return _created(service.start_template(context(), api_principal(), name, variables))


@bp.post("/catalog/<name>/render")
def render_template(name: str) -> Response:
    variables = _variables(json_body())
    spec = service.render_template(context(), api_principal(), name, variables)
    return jsonify({"template": name, "spec": spec})


def _variables(body: Any) -> Any:
    if not isinstance(body, dict) or set(body) - {"variables"}:
        raise SpecError({"body": 'send {"variables": {"name": value, ...}}'})
    return body.get("variables") or {}
