"""Turning errors into HTTP answers: JSON under /api, an HTML page elsewhere."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
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
    return request.path.startswith("/api/")


def _answer(exc: JobsysError, status: int) -> tuple[Response | str, int]:
    if _wants_json():
        response = jsonify(exc.to_dict())
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="jobsys"'
        return response, status
    return render_template("error.html", error=exc, status=status), status


def init_app(app: Flask) -> None:
    @app.errorhandler(JobsysError)
    def _jobsys_error(exc: JobsysError) -> tuple[Response | str, int]:
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
