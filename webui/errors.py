"""Turning errors into HTTP answers: JSON under /api, an HTML page elsewhere."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from jobsys.errors import (
    DispatchError,
    JobsysError,
    NotFoundError,
    PayloadTooLarge,
    PermissionDenied,
    SpecError,
    StateError,
    Unauthenticated,
)

#: Most specific first.
HTTP_STATUS: list[tuple[type[JobsysError], int]] = [
    (PayloadTooLarge, 413),
    (SpecError, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFoundError, 404),
    (StateError, 409),
    (DispatchError, 503),
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


def _answer(exc: JobsysError, status: int) -> tuple[Response | str, int]:
    if _wants_json():
        response = jsonify(exc.to_dict())
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="jobsys"'
        return response, status
    return render_template("error.html", error=exc, status=status), status


def _audit_refusal(app: Flask, exc: JobsysError) -> None:
    """A missing right, or credentials that did not work, go to the audit trail.
    A request that brought no credentials at all is not news and is left out."""
    if isinstance(exc, Unauthenticated) and "Authorization" not in request.headers:
        return
    from jobsys import service

    detail = {"right": exc.right} if isinstance(exc, PermissionDenied) else {"why": exc.message}
    try:
        service.record(
            app.extensions["jobsys"],
            g.get("principal"),
            "denied",
            f"{request.method} {request.path}",
            outcome="denied",
            detail=detail,
            source=request.remote_addr or "",
        )
    except Exception:  # the refusal stands even if the audit write fails
        logging.getLogger(__name__).exception("could not write the audit entry")


def init_app(app: Flask) -> None:
    @app.errorhandler(JobsysError)
    def _jobsys_error(exc: JobsysError) -> tuple[Response | str, int]:
        if isinstance(exc, PermissionDenied | Unauthenticated):
            _audit_refusal(app, exc)
        return _answer(exc, status_for(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> tuple[Response | str, int]:
        limit = app.config["MAX_CONTENT_LENGTH"]
        exc = PayloadTooLarge(
            {
                "body": f"the request is larger than {limit} bytes (JOBSYS_MAX_PAYLOAD_BYTES); "
                "send fewer items or split the job"
            }
        )
        return _answer(exc, 413)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        if not _wants_json():
            return exc
        body = {"error": exc.name.replace(" ", ""), "message": exc.description or exc.name}
        return jsonify(body), exc.code or 500
