"""Turning errors into HTTP answers: JSON under /api, an HTML page elsewhere."""

from __future__ import annotations

import itertools
import logging
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from jobsys.errors import (
    DatabaseUnavailable,
    DispatchError,
    IdempotencyMismatch,
    JobsysError,
    NotFoundError,
    PayloadTooLarge,
    PermissionDenied,
    SignInRefused,
    SpecError,
    StateError,
    TooManyStreams,
    Unauthenticated,
)
from jobsys.service.sign_in_throttle import SignInThrottled

#: Most specific first.
HTTP_STATUS: list[tuple[type[JobsysError], int]] = [
    (PayloadTooLarge, 413),
    (IdempotencyMismatch, 422),
    (SpecError, 400),
    (SignInThrottled, 429),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (SignInRefused, 403),
    (NotFoundError, 404),
    (StateError, 409),
    (DispatchError, 503),
    (DatabaseUnavailable, 503),
    (TooManyStreams, 429),
]


def status_for(exc: JobsysError) -> int:
    for cls, status in HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _wants_json() -> bool:
    """API callers: the /api/ routes, and any request bearing a token (Flower's API
    through the /flower proxy, say)."""
    bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
    return bearer or request.path.startswith("/api/")


#: Most fields one error answer lists; the rest are counted in ``fields_omitted``.
MAX_ERROR_FIELDS = 50
#: Longest field name, field message and error message an answer repeats, in characters.
MAX_FIELD_NAME, MAX_FIELD_MESSAGE, MAX_MESSAGE = 200, 1000, 4000


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else f"{text[:most]}… ({len(text):,} characters in all)"


def error_body(exc: JobsysError) -> dict[str, Any]:
    """The JSON body for an error, bounded whatever the input was.

    A SpecError names each bad field and repeats it in its message, so an
    answer grows with the request: 300,000 unknown variables once made a
    45 MB answer. Here, at the one place errors become JSON, every door lists
    at most ``MAX_ERROR_FIELDS`` fields (in their order) and counts the rest.
    """
    body = exc.to_dict()
    if not isinstance(exc, SpecError):
        body["message"] = _cut(exc.message, MAX_MESSAGE)
        return body
    shown = dict(itertools.islice(exc.fields.items(), MAX_ERROR_FIELDS))
    omitted = len(exc.fields) - len(shown)
    body["fields"] = {
        _cut(name, MAX_FIELD_NAME): _cut(str(fix), MAX_FIELD_MESSAGE) for name, fix in shown.items()
    }
    if omitted:
        body["fields_omitted"] = omitted
        summary = "; ".join(f"{name}: {fix}" for name, fix in body["fields"].items())
        body["message"] = _cut(f"invalid input: {summary}", MAX_MESSAGE)
        body["message"] += f"; and {omitted:,} more fields"
    else:
        body["message"] = _cut(body["message"], MAX_MESSAGE)
    return body


def _answer(exc: JobsysError, status: int) -> tuple[Response | str, int]:
    if _wants_json():
        response = jsonify(error_body(exc))
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="jobsys"'
        if isinstance(exc, SignInThrottled):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response, status
    return render_template("error.html", error=exc, status=status), status


def _audit_refusal(exc: JobsysError) -> None:
    """A missing right, or credentials that did not work, go to the audit trail.
    A request that brought no credentials at all is not news and is left out."""
    if isinstance(exc, Unauthenticated) and "Authorization" not in request.headers:
        return
    from jobsys import service

    detail = {"right": exc.right} if isinstance(exc, PermissionDenied) else {"why": exc.message}
    try:
        service.record(
            current_app.extensions["jobsys"],
            g.get("principal"),
            "denied",
            f"{request.method} {request.path}",
            outcome="denied",
            detail=detail,
            source=request.remote_addr or "",
        )
    except Exception:  # the refusal stands even if the audit write fails
        logging.getLogger(__name__).exception("could not write the audit entry")


#: What SQLAlchemy raises when the database is down, unreachable, locked past the
#: busy timeout, or out of pooled connections: the request could not be served now.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


def database_unavailable(exc: Exception) -> DatabaseUnavailable:
    """The 503 for a database that stopped answering in the middle of a request.

    Each service function writes in one transaction, and a failed one rolls
    back, so what this request tried to change is either whole or absent. A
    submission may still have been stored just before the failure; retrying it
    with the same Idempotency-Key cannot make a second job.
    """
    orig = getattr(exc, "orig", None) or exc
    reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
    return DatabaseUnavailable(
        f"the database is unavailable ({reason}); try again in a moment. "
        "Nothing was half-written; a submission sent with an Idempotency-Key "
        "is safe to repeat."
    )


def error_response(exc: JobsysError) -> tuple[Response | str, int]:
    """The answer to a JobsysError (refusals audited), for handlers of any blueprint."""
    # A throttled token is not audited: a flood of refusals would cost a write each.
    if isinstance(exc, PermissionDenied | Unauthenticated) and not isinstance(exc, SignInThrottled):
        _audit_refusal(exc)
    return _answer(exc, status_for(exc))


def init_app(app: Flask) -> None:
    def _database_down(exc: Exception) -> tuple[Response | str, int]:
        logging.getLogger(__name__).warning(
            "%s %s: database unavailable: %s", request.method, request.path, exc
        )
        return _answer(database_unavailable(exc), 503)

    for cls in DATABASE_DOWN:
        app.register_error_handler(cls, _database_down)

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError) -> tuple[Response | str, int]:
        # json.loads parses nearly to the recursion limit, and what runs after it
        # (dataclasses.asdict of a step, repr in a message) recurses with more
        # frames per level: a 900-deep item parsed and then crashed the request.
        # Walking every body for its depth first cost as much as parsing it.
        logging.getLogger(__name__).warning(
            "%s %s: input nested too deeply: %s", request.method, request.path, exc
        )
        problem = SpecError(
            {"body": "lists or objects nest too deeply to handle; flatten the input"}
        )
        return _answer(problem, 400)

    @app.errorhandler(JobsysError)
    def _jobsys_error(exc: JobsysError) -> tuple[Response | str, int]:
        return error_response(exc)

    @app.errorhandler(CSRFError)
    def _no_csrf(exc: CSRFError) -> tuple[Response | str, int]:
        why = (exc.description or "The CSRF token is missing").rstrip(".")
        fix = "this form must be sent from a jobsys page; reload the page and send it again"
        return _answer(SpecError({"csrf_token": f"{why}: {fix}"}), 400)

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> tuple[Response | str, int]:
        # The database refused a value (out of its range, text it cannot hold);
        # the transaction rolled back, so the request changed nothing.
        logging.getLogger(__name__).warning(
            "%s %s: the database refused a value: %s", request.method, request.path, exc
        )
        reason = (str(exc.orig).strip().splitlines() or ["a value out of range"])[0][:300]
        return _answer(SpecError({"body": f"the database cannot store a value: {reason}"}), 400)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> tuple[Response | str, int]:
        from webui.input_guard import body_limit

        limit, setting = body_limit()
        fix = (
            "send fewer items or split the job"
            if setting == "JOBSYS_MAX_PAYLOAD_BYTES"
            else "this route takes small bodies only"
        )
        exc = PayloadTooLarge(
            {"body": f"the request is larger than {limit} bytes ({setting}); {fix}"}
        )
        return _answer(exc, 413)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        if not _wants_json():
            return exc
        body = {"error": exc.name.replace(" ", ""), "message": exc.description or exc.name}
        return jsonify(body), exc.code or 500
