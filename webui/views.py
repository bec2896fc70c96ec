"""HTML pages: job list, job detail, submit form, sign-in. They read and write
through the same service functions as the API and work without JavaScript."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from jobsys import service
from jobsys.auth import Right
from jobsys.errors import JobsysError, SpecError, StateError, Unauthenticated
from jobsys.service.jobs import stream_job_results
from jobsys.service.records import ResultStream
from jobsys.specs import docker_step_from_form, form_field
from jobsys.states import JobStatus
from webui.charts import hourly_chart
from webui.errors import error_response, status_for
from webui.principal import (
    PUBLIC,
    SESSION_KEY,
    context,
    current_principal,
    needs,
    page_principal,
    source,
)
from webui.stream import event_response

bp = Blueprint("views", __name__)

#: Past this a page number means nothing, and overflows the database's integers.
MAX_PAGE = 1_000_000_000


@bp.errorhandler(Unauthenticated)
def sign_in_first(exc: Unauthenticated) -> Any:
    """People go to the sign-in page; a program that sent a bad token gets its 401."""
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return error_response(exc)
    return redirect(url_for("views.login", next=request.full_path))


@bp.get("/")
@needs(Right.VIEW)
def dashboard() -> str:
    """Counts, the last day's jobs per hour and failure rate, queues, workers, failures."""
    principal = page_principal()
    board = service.dashboard(context(), principal)
    return render_template(
        "dashboard.html", board=board, chart=hourly_chart(board.hours), principal=principal
    )


@bp.route("/login", methods=["GET", "POST"])
@needs(PUBLIC)
def login() -> Any:
    """Sign in with a name and password, or with an API token. The cookie gets a
    web session's reference, never the token (see jobsys.service.web_sessions)."""
    error, status, headers = None, 200, {}
    if request.method == "POST":
        try:
            started = service.start_web_session(
                context(),
                name=(request.form.get("name") or "").strip(),
                password=request.form.get("password") or "",
                token=(request.form.get("token") or "").strip(),
                source=source(),
            )
        except service.SignInThrottled as exc:
            error, status = exc.message, 429
            headers["Retry-After"] = str(exc.retry_after_s)
        except Unauthenticated as exc:
            error, status = exc.message, 401
        else:
            session.clear()  # a new session (and CSRF token) for the signed-in user
            session.permanent = True  # the cookie lasts as long as the session row
            session[SESSION_KEY] = started.reference
            return redirect(local_path(request.args.get("next")) or url_for("views.dashboard"))
    return render_template("login.html", error=error), status, headers


@bp.post("/logout")
@needs(PUBLIC)
def logout() -> Response:
    service.end_web_session(context(), session.get(SESSION_KEY))
    session.clear()
    return redirect(url_for("views.login"))


def project_switcher() -> dict[str, Any]:
    """The projects the page's signed-in caller may switch between (their own;
    every one for a global role), and the one the page shows (``?project=``)."""
    principal = g.get("principal")
    if principal is None or not principal.can_somewhere(Right.VIEW):
        return {"switch_projects": [], "current_project": None}
    names = [p.name for p in service.list_projects(context(), principal)]
    return {"switch_projects": names, "current_project": request.args.get("project") or None}


@bp.get("/jobs")
@needs(Right.VIEW)
def jobs() -> str:
    principal = page_principal()
    try:
        page_no = min(max(1, int(request.args.get("page", "1"))), MAX_PAGE)
    except ValueError:
        page_no = 1
    message = None
    try:
        where = service.JobFilter.parse(request.args.to_dict())
    except SpecError as exc:
        where, message = service.JobFilter(), exc.message
    page = service.list_jobs(context(), principal, where=where, page=page_no, per_page=25)
    stats = service.job_stats(context(), principal)
    return render_template(
        "jobs.html",
        page=page,
        where=where,
        args=where.to_args(),
        message=message or request.args.get("cancelled"),
        stats=stats,
        statuses=[s.value for s in JobStatus],
        sorts=list(service.job_list.SORTS),
        principal=principal,
    )


@bp.post("/jobs/cancel")
@needs(Right.CANCEL)
def cancel_selected() -> Response:
    """Bulk cancel from the job list's checkboxes."""
    outcome = service.cancel_jobs(context(), page_principal(), request.form.getlist("job_id"))
    back = local_path(request.form.get("next")) or url_for("views.jobs")
    sep = "&" if "?" in back else "?"
    return redirect(f"{back}{sep}cancelled={quote(outcome.summary)}")


@bp.get("/workers")
@needs(Right.VIEW)
def workers() -> tuple[str, int]:
    principal = page_principal()
    try:
        found, problem = service.list_workers(context(), principal), None
    except JobsysError as exc:
        found, problem = [], exc.message
    page = render_template("workers.html", workers=found, problem=problem, principal=principal)
    return page, 503 if problem else 200


@bp.get("/jobs/<job_id>")
@needs(Right.VIEW)
def job_detail(job_id: str) -> str:
    principal = page_principal()
    ctx = context()
    job = service.get_job(ctx, principal, job_id)
    tasks = service.job_tasks(ctx, principal, job_id)
    logs = service.job_logs(ctx, principal, job_id, tail=500)
    results = None
    if any(s.kind == "function" for s in job.steps):
        try:  # only the page shown: the rest is a download away
            results = service.job_results(ctx, principal, job_id, limit=RESULTS_SHOWN)
        except StateError:
            results = None
    return render_template(
        "job.html", job=job, tasks=tasks, logs=logs, results=results, principal=principal
    )


#: Item outcomes the job page shows; the JSON download has all of them.
RESULTS_SHOWN = 100


@bp.get("/jobs/<job_id>/results.json")
@needs(Right.VIEW)
def job_results(job_id: str) -> Response:
    """Every item's outcome as a JSON download, for the signed-in page. Streamed a
    page at a time, so a million results never sit in the web process at once."""
    found = stream_job_results(context(), current_principal(), job_id)
    response = Response(_results_json(found), mimetype="application/json")
    response.direct_passthrough = True  # not buffered to be gzipped after the fact
    response.headers["Content-Disposition"] = f'attachment; filename="job-{job_id}-results.json"'
    return response


def _results_json(found: ResultStream) -> Iterator[bytes]:
    """The download's JSON: the results' head fields, then ``results``, one page per piece."""
    yield json.dumps({**found.head, "offset": 0})[:-1].encode() + b', "results": ['
    sep = b""
    for page in found.pages:
        if page:
            yield sep + ",".join(json.dumps(o) for o in page).encode()
            sep = b","
    yield b"]}"


@bp.get("/jobs/<job_id>/events")
@needs(Right.VIEW)
def job_events(job_id: str) -> Response:
    """The same stream as the API's, for the signed-in page's EventSource."""
    return event_response(page_principal(), job_id)


@bp.post("/jobs/<job_id>/cancel")
@needs(Right.CANCEL)
def cancel(job_id: str) -> Response:
    service.cancel_job(context(), page_principal(), job_id)
    return redirect(
        local_path(request.form.get("next")) or url_for("views.job_detail", job_id=job_id)
    )


@bp.post("/jobs/<job_id>/rerun")
@needs(Right.RERUN)
def rerun(job_id: str) -> Response:
    job = service.rerun_job(context(), page_principal(), job_id)
    return redirect(url_for("views.job_detail", job_id=job.id))


@bp.post("/jobs/<job_id>/resume")
@needs(Right.RERUN)
def resume(job_id: str) -> Response:
    job = service.resume_job(context(), page_principal(), job_id)
    return redirect(url_for("views.job_detail", job_id=job.id))


def local_path(target: str | None) -> str | None:
    """Only a path on this site, else None: an open redirect would hand the
    session to another site.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash,
    so ``/%09/evil.example`` (a slash, a tab and ``/evil.example`` once
    decoded) is ``//evil.example`` to them: another host. The target is
    refused if it, or what it decodes to (percent-escapes undone until nothing
    changes), has a scheme or host, starts with ``//``, or holds a backslash or
    a control character anywhere.
    """
    if not target or len(target) > MAX_NEXT:
        return None
    forms = [target]
    while unquote(forms[-1]) != forms[-1]:
        if len(forms) == 4:  # encoded three times over: no page of ours
            return None
        forms.append(unquote(forms[-1]))
    for form in forms:
        if not form.startswith("/") or form.startswith("//") or "\\" in form:
            return None
        if any(unicodedata.category(c) == "Cc" for c in form):
            return None
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return None
    return target


#: Longer than any page of ours; a ``next`` past it is refused.
MAX_NEXT = 2000


@bp.route("/jobs/new", methods=["GET", "POST"])
@needs(Right.SUBMIT)
def submit() -> Any:
    principal = page_principal()
    form: dict[str, str] = {"image": "jobsys/busybox:local", "timeout_s": "60", "retries": "0"}
    errors: dict[str, str] = {}
    message = None
    if request.method == "POST":
        form = {k: v for k, v in request.form.items() if k != "csrf_token"}
        spec: dict[str, Any] | None = None
        try:
            spec = docker_step_from_form(form)
            job = service.submit_job(context(), principal, spec)
        except SpecError as exc:
            errors = {form_field(k, spec): v for k, v in exc.fields.items()}
            message = exc.message
        except JobsysError as exc:
            return render_template(
                "submit.html", form=form, errors={}, message=exc.message, principal=principal
            ), status_for(exc)
        else:
            return redirect(url_for("views.job_detail", job_id=job.id))
    status = 400 if errors else 200
    return render_template(
        "submit.html", form=form, errors=errors, message=message, principal=principal
    ), status
