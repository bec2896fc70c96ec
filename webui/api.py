"""The JSON API. Each route: authenticate, parse, one service call, jsonify."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, jsonify, make_response, request, url_for

from jobsys import service
from jobsys.auth import Right
from jobsys.errors import SpecError, TooManyStreams
from jobsys.service.idempotency import HEADER as IDEMPOTENCY_HEADER
from jobsys.service.jobs import RESULTS_PAGE
from jobsys.specs import DEFAULT_PROJECT
from jobsys.storable import check_json
from webui import openapi
from webui.compression import request_body
from webui.errors import error_response
from webui.principal import PUBLIC, api_principal, context, needs
from webui.stream import event_response

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> Any:
    raw = request_body(request)
    if not raw.strip():
        raise SpecError({"body": "send a JSON object in the request body"})
    try:
        parsed = json.loads(raw)
    except RecursionError as exc:
        raise SpecError({"body": "JSON nested too deeply"}) from exc
    except ValueError as exc:  # malformed, not UTF-8, or a number of over 4,300 digits
        raise SpecError({"body": f"malformed JSON: {exc}"}) from exc
    check_json(raw, parsed, "body")
    return parsed


#: Larger query numbers mean nothing here, and overflow the database's integers.
MAX_INT_ARG = 1_000_000_000


def int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SpecError({name: f"give a whole number, not {raw[:40]!r}"}) from exc
    if abs(value) > MAX_INT_ARG:
        raise SpecError({name: f"give a whole number of at most {MAX_INT_ARG:,}"})
    return value


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A string member of a JSON object; None when absent and not required."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise SpecError({name: "give text (a JSON string)"})
    return value


def project_arg() -> str | None:
    """``?project=``: the project a name (a template's, a schedule's, a
    secret's) is looked up in, or a list narrowed to; None when not given."""
    raw = request.args.get("project") or None  # an empty one, as a form sends it: none
    return None if raw is None else service.check_project_name(raw)


def role_place(body: dict[str, Any]) -> str | None:
    """Where a role in ``body`` is held: its ``"project"`` (default: ``default``),
    or None for ``"global": true`` (held in every project)."""
    is_global = body.get("global", False)
    if not isinstance(is_global, bool):
        raise SpecError({"global": "give true (a role in every project) or false"})
    if is_global:
        if "project" in body:
            raise SpecError({"project": "give 'project' or 'global', not both"})
        return None
    return service.check_project_name(body.get("project", DEFAULT_PROJECT))


def idempotency(body: Any) -> service.Idempotency | None:
    """The request's ``Idempotency-Key``, bound to this route and body; None without one."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    return service.Idempotency.of(key, f"{request.method} {request.path}", body)


@bp.get("/openapi.json")
@needs(PUBLIC)
def openapi_json() -> Response:
    """The API's description; open to all, as the sign-in page is."""
    return jsonify(openapi.document())


@bp.post("/jobs")
@needs(Right.SUBMIT)
def submit_job() -> tuple[Response, int, dict[str, str]]:
    """With an ``Idempotency-Key`` header, a repeat within 24 h gets the first job back."""
    body = json_body()
    job = service.submit_job(context(), api_principal(), body, once=idempotency(body))
    return _created(job)


@bp.get("/jobs")
@needs(Right.VIEW)
def list_jobs() -> Response:
    """Filters: status, owner, template, tag, q (id, or start of the name), since,
    until (ISO times), sort (-created, created, -finished, name); page, per_page."""
    page = service.list_jobs(
        context(),
        api_principal(),
        where=service.JobFilter.parse(request.args.to_dict()),
        page=int_arg("page", 1) or 1,
        per_page=int_arg("per_page", 50) or 50,
    )
    return jsonify(page.to_dict())


#: Says that the server held the answer for ``?wait=`` (a server that predates
#: it ignores the parameter): the client then needs no sleep of its own.
WAIT_HEADER = "Jobsys-Wait"


@bp.get("/jobs/<job_id>")
@needs(Right.VIEW)
def get_job(job_id: str) -> Response:
    """With ``wait=S`` (0 < S <= 60), answers as soon as the job has ended, or
    after S seconds with its current state. With ``results=N`` (1 to 100) an
    ended job comes with its first N outcomes, as ``/results`` gives them."""
    wait = request.args.get("wait")
    inline = int_arg("results", None)
    if inline is not None:
        service.check_inline_results(inline)
    if wait is None:
        job = service.get_job(context(), api_principal(), job_id)
    else:
        try:
            job = service.wait_for_job(context(), api_principal(), job_id, wait)
        except TooManyStreams as exc:
            return _too_many(exc)
    response = _json_page(_with_results([job], inline)[0])
    if wait is not None:
        response.headers[WAIT_HEADER] = "1"
    return response


def _with_results(jobs: Sequence[service.JobInfo], inline: int | None) -> list[dict[str, Any]]:
    """Each job as JSON, with ``results`` (its first ``inline`` outcomes) when
    asked for and it ended with item results."""
    pages = (
        service.first_results(context(), api_principal(), jobs, inline)
        if inline is not None
        else {}
    )
    return [
        {**job.to_dict(), "results": pages[job.id]} if job.id in pages else job.to_dict()
        for job in jobs
    ]


@bp.post("/jobs/wait")
@needs(Right.VIEW)
def wait_for_jobs() -> Response:
    """``{"ids": [...up to 1,000], "timeout_s": S, "results": N}``: answers as
    soon as one of them has ended (or after S seconds) with ``ended`` (jobs,
    each with its first N outcomes when asked), ``open`` and ``missing`` (ids no
    job has)."""
    body = json_body()
    if not isinstance(body, dict):
        raise SpecError({"body": 'send a JSON object: {"ids": [...], "timeout_s": 30}'})
    inline = body.get("results")
    if inline is not None:
        service.check_inline_results(inline)
    try:
        waited = service.wait_for_jobs(
            context(), api_principal(), body.get("ids"), body.get("timeout_s", 30)
        )
    except TooManyStreams as exc:
        return _too_many(exc)
    return _json_page({**waited.to_dict(), "ended": _with_results(waited.ended, inline)})


def _too_many(exc: TooManyStreams) -> Response:
    """429 with ``Retry-After``, as a refused event stream answers."""
    body, status = error_response(exc)
    refused = make_response(body, status)
    refused.headers["Retry-After"] = str(exc.retry_after_s)
    return refused


@bp.post("/jobs/<job_id>/cancel")
@needs(Right.CANCEL)
def cancel_job(job_id: str) -> Response:
    return jsonify(service.cancel_job(context(), api_principal(), job_id).to_dict())


@bp.post("/jobs/<job_id>/rerun")
@needs(Right.RERUN)
def rerun_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
    return _created(service.rerun_job(context(), api_principal(), job_id))


@bp.post("/jobs/<job_id>/resume")
@needs(Right.RERUN)
def resume_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
    return _created(service.resume_job(context(), api_principal(), job_id))


def _created(job: service.JobInfo) -> tuple[Response, int, dict[str, str]]:
    headers = {"Location": url_for("api.get_job", job_id=job.id)}
    if job.replayed:
        headers["Idempotent-Replayed"] = "true"  # as Stripe marks a repeat's answer
    return jsonify(job.to_dict()), 202, headers


@bp.get("/jobs/<job_id>/events")
@needs(Right.VIEW)
def job_events(job_id: str) -> Response:
    return event_response(api_principal(), job_id)


@bp.get("/jobs/<job_id>/tasks")
@needs(Right.VIEW)
def job_tasks(job_id: str) -> Response:
    tasks = service.job_tasks(context(), api_principal(), job_id)
    return jsonify({"job_id": job_id, "tasks": [t.to_dict() for t in tasks]})


@bp.get("/jobs/<job_id>/logs")
@needs(Right.VIEW)
def job_logs(job_id: str) -> Response:
    logs = service.job_logs(context(), api_principal(), job_id, tail=int_arg("tail", None))
    return jsonify({"job_id": job_id, "logs": [entry.to_dict() for entry in logs]})


@bp.get("/jobs/<job_id>/results")
@needs(Right.VIEW)
def job_results(job_id: str) -> Response:
    """A page of item outcomes: ``offset`` (0) and ``limit`` (1,000, at most 20,000);
    follow ``next_offset`` until it is null. With ``wait=S`` (0 < S <= 60) it
    first waits for the job to end, as ``GET /api/jobs/<id>?wait=S`` does: then
    the page with ``"ended": true``, or after S seconds ``"ended": false`` and
    the job as it is (no results)."""
    offset = int_arg("offset", 0) or 0
    limit = int_arg("limit", RESULTS_PAGE) or 0
    wait = request.args.get("wait")
    if wait is None:
        found = service.job_results(context(), api_principal(), job_id, offset=offset, limit=limit)
    else:
        try:
            found = service.wait_for_results(
                context(), api_principal(), job_id, wait, offset=offset, limit=limit
            )
        except TooManyStreams as exc:
            return _too_many(exc)
    response = _json_page(found)
    if wait is not None:
        response.headers[WAIT_HEADER] = "1"
    return response


def _json_page(found: dict[str, Any]) -> Response:
    """``found`` as a JSON answer."""
    # orjson: a page of 20,000 outcomes took the stdlib encoder most of the
    # request's time. It refuses integers past 64 bits, which jsonify still sends.
    try:
        body = orjson.dumps(found)
    except TypeError:
        return jsonify(found)
    return Response(body, mimetype="application/json")


@bp.get("/stats")
@needs(Right.VIEW)
def stats() -> Response:
    return jsonify(service.job_stats(context(), api_principal()))


@bp.get("/dashboard")
@needs(Right.VIEW)
def dashboard() -> Response:
    """The dashboard's figures: counts, the last 24 h per hour, queues, workers, failures."""
    return jsonify(service.dashboard(context(), api_principal()).to_dict())


@bp.get("/workers")
@needs(Right.VIEW)
def workers() -> Response:
    found = service.list_workers(context(), api_principal())
    return jsonify({"workers": [w.to_dict() for w in found]})


@bp.get("/tokens")
@needs(Right.ADMIN)
def list_tokens() -> Response:
    found = service.list_tokens(context(), api_principal())
    return jsonify({"tokens": [t.to_dict() for t in found]})


@bp.post("/tokens/<int:token_id>/revoke")
@needs(Right.ADMIN)
def revoke_token(token_id: int) -> tuple[str, int]:
    service.revoke_token(context(), api_principal(), token_id)
    return "", 204


@bp.post("/tokens")
@needs(Right.ADMIN)
def create_token() -> tuple[Response, int]:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {
        "name", "role", "expires_in_s", "project", "global", "user"
    }:  # fmt: skip
        raise SpecError(
            {
                "body": "send an object with 'name' and 'role' (and 'expires_in_s' if it "
                "expires, 'project' or 'global', 'user' for a user's token)"
            }
        )
    is_global = body.get("global", False)
    if not isinstance(is_global, bool):
        raise SpecError({"global": "give true (a token for every project) or false"})
    issued = service.create_token(
        context(),
        api_principal(),
        name=text_field(body, "name") or "",
        role=text_field(body, "role") or "",
        expires_in_s=body.get("expires_in_s"),
        user=text_field(body, "user", required=False),
        project=body.get("project"),
        global_token=is_global,
    )
    return jsonify(issued.to_dict()), 201


@bp.post("/schedules")
@needs(Right.SCHEDULE)
def create_schedule() -> tuple[Response, int, dict[str, str]]:
    created = service.create_schedule(context(), api_principal(), json_body())
    location = url_for("api.get_schedule", ref=created.id)
    return jsonify(created.to_dict()), 201, {"Location": location}


@bp.get("/schedules")
@needs(Right.VIEW)
def list_schedules() -> Response:
    found = service.list_schedules(context(), api_principal(), project=project_arg())
    return jsonify({"schedules": [s.to_dict() for s in found]})


@bp.get("/schedules/<ref>")
@needs(Right.VIEW)
def get_schedule(ref: str) -> Response:
    found = service.get_schedule(context(), api_principal(), ref, project=project_arg())
    return jsonify(found.to_dict())


@bp.patch("/schedules/<ref>")
@needs(Right.SCHEDULE)
def update_schedule(ref: str) -> Response:
    updated = service.update_schedule(
        context(), api_principal(), ref, json_body(), project=project_arg()
    )
    return jsonify(updated.to_dict())


@bp.delete("/schedules/<ref>")
@needs(Right.SCHEDULE)
def delete_schedule(ref: str) -> tuple[str, int]:
    service.delete_schedule(context(), api_principal(), ref, project=project_arg())
    return "", 204


@bp.get("/schedules/<ref>/runs")
@needs(Right.VIEW)
def schedule_runs(ref: str) -> Response:
    found = service.schedule_runs(
        context(), api_principal(), ref, limit=int_arg("limit", 50) or 50, project=project_arg()
    )
    return jsonify({"runs": [r.to_dict() for r in found]})


@bp.post("/schedules/<ref>/run-now")
@needs(Right.RERUN)
def run_schedule_now(ref: str) -> tuple[Response, int, dict[str, str]]:
    return _created(
        service.run_schedule_now(context(), api_principal(), ref, project=project_arg())
    )


@bp.get("/catalog")
@needs(Right.VIEW)
def list_catalog() -> Response:
    return jsonify(
        service.list_catalog(context(), api_principal(), project=project_arg()).to_dict()
    )


@bp.post("/catalog/reload")
@needs(Right.ADMIN)
def reload_catalog() -> Response:
    return jsonify(service.reload_catalog(context(), api_principal()).to_dict())


@bp.get("/catalog/<name>")
@needs(Right.VIEW)
def get_template(name: str) -> Response:
    found = service.get_template(context(), api_principal(), name, project=project_arg())
    return jsonify(found.to_dict())


@bp.post("/catalog/<name>/start")
@needs(Right.START)
def start_template(name: str) -> tuple[Response, int, dict[str, str]]:
    """Takes an ``Idempotency-Key`` header like ``POST /api/jobs``."""
    body = json_body()
    job = service.start_template(
        context(),
        api_principal(),
        name,
        _variables(body),
        once=idempotency(body),
        project=project_arg(),
    )
    return _created(job)


@bp.post("/catalog/<name>/render")
@needs(Right.VIEW)
def render_template(name: str) -> Response:
    variables = _variables(json_body())
    spec = service.render_template(
        context(), api_principal(), name, variables, project=project_arg()
    )
    return jsonify({"template": name, "spec": spec})


def _variables(body: Any) -> Any:
    if not isinstance(body, dict) or set(body) - {"variables"}:
        raise SpecError({"body": 'send {"variables": {"name": value, ...}}'})
    return body.get("variables") or {}


@bp.get("/users")
@needs(Right.ADMIN)
def list_users() -> Response:
    found = service.list_users(context(), api_principal())
    return jsonify({"users": [u.to_dict() for u in found]})


@bp.post("/users")
@needs(Right.ADMIN)
def add_user() -> tuple[Response, int]:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"name", "password", "role", "project", "global"}:
        raise SpecError(
            {
                "body": "send an object with 'name', 'password' and 'role' (and 'project', "
                "default 'default', or 'global': true)"
            }
        )
    added = service.add_user(
        context(),
        api_principal(),
        name=text_field(body, "name") or "",
        password=text_field(body, "password") or "",
        role=text_field(body, "role") or "",
        project=role_place(body),
    )
    return jsonify(added.to_dict()), 201


@bp.patch("/users/<name>")
@needs(Right.ADMIN)
def update_user(name: str) -> Response:
    body = json_body()
    known = {"role", "password", "disabled", "project", "global"}
    if not isinstance(body, dict) or not body or set(body) - known:
        raise SpecError(
            {
                "body": "send some of 'role' (with 'project', default 'default', or "
                "'global': true), 'password', 'disabled'"
            }
        )
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise SpecError({"disabled": "give true or false"})
    updated = service.update_user(
        context(),
        api_principal(),
        name,
        role=text_field(body, "role", required=False),
        project=role_place(body),
        password=text_field(body, "password", required=False),
        disabled=body.get("disabled"),
    )
    return jsonify(updated.to_dict())


@bp.get("/secrets")
@needs(Right.ADMIN)
def list_secrets() -> Response:
    found = service.list_secrets(context(), api_principal(), project=project_arg())
    return jsonify({"secrets": [s.to_dict() for s in found]})


@bp.post("/secrets")
@needs(Right.ADMIN)
def set_secret() -> tuple[Response, int]:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"name", "value", "roles", "project"}:
        raise SpecError({"body": "send an object with 'name' and 'value' (and 'roles', 'project')"})
    stored, created = service.set_secret(
        context(),
        api_principal(),
        text_field(body, "name") or "",
        text_field(body, "value") or "",
        roles=body.get("roles"),
        project=body.get("project", DEFAULT_PROJECT),
    )
    return jsonify(stored.to_dict()), 201 if created else 200


@bp.delete("/secrets/<name>")
@needs(Right.ADMIN)
def delete_secret(name: str) -> tuple[str, int]:
    service.delete_secret(
        context(), api_principal(), name, project=project_arg() or DEFAULT_PROJECT
    )
    return "", 204


@bp.get("/audit")
@needs(Right.ADMIN)
def audit() -> Response:
    entries, total = service.list_audit(context(), api_principal(), **audit_filters())
    return jsonify({"entries": [e.to_dict() for e in entries], "total": total})


def audit_filters() -> dict[str, Any]:
    """The audit filters from the query string, shared with the Audit page."""
    return {
        "actor": request.args.get("actor") or None,
        "action": request.args.get("action") or None,
        "outcome": request.args.get("outcome") or None,
        "project": project_arg(),
        "since": _when("since"),
        "until": _when("until"),
        "page": int_arg("page", 1) or 1,
        "per_page": int_arg("per_page", 100) or 100,
    }


def _when(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise SpecError(
            {name: f"give an ISO date or time such as 2026-11-23T10:00, not {raw!r}"}
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@bp.get("/projects")
@needs(Right.VIEW)
def list_projects() -> Response:
    found = service.list_projects(context(), api_principal())
    return jsonify({"projects": [p.to_dict() for p in found]})


@bp.post("/projects")
@needs(Right.ADMIN)
def create_project() -> tuple[Response, int, dict[str, str]]:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"name", "description"}:
        raise SpecError({"body": "send an object with 'name' (and 'description')"})
    made = service.create_project(
        context(), api_principal(), body.get("name"), description=body.get("description", "")
    )
    return jsonify(made.to_dict()), 201, {"Location": url_for("api.list_projects")}


@bp.put("/projects/<project>/members/<user>")
@needs(Right.ADMIN)
def set_member(project: str, user: str) -> Response:
    body = json_body()
    if not isinstance(body, dict) or set(body) != {"role"}:
        raise SpecError({"body": 'send {"role": "viewer"} (or operator, developer, admin)'})
    return jsonify(service.set_member(context(), api_principal(), project, user, body["role"]))


@bp.delete("/projects/<project>/members/<user>")
@needs(Right.ADMIN)
def remove_member(project: str, user: str) -> tuple[str, int]:
    service.remove_member(context(), api_principal(), project, user)
    return "", 204
