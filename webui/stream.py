"""Server-sent events: a job's status, progress and log lines as they happen."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Response, make_response, request, stream_with_context

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.events import parse_event_id
from jobsys.errors import TooManyStreams
from jobsys.service.live import LiveStream
from webui.errors import error_response
from webui.principal import context

#: Where a client may name the last event it saw, newest first: EventSource
#: sends the header on a reconnect, and cannot set it on the first request.
CURSOR_SOURCES = ("Last-Event-ID", "last_event_id", "after")
LIFETIME_UP = (
    "this stream reached its lifetime (JOBSYS_STREAM_MAX_S); "
    "reconnect with Last-Event-ID to go on after the last event"
)


def event_response(principal: Principal, job_id: str) -> Response:
    """Replay from ``Last-Event-ID`` (header, or ``?last_event_id=`` / ``?after=``
    for clients that cannot set it), then follow live until the job ends or the
    stream reaches ``JOBSYS_STREAM_MAX_S`` (then the client reconnects)."""
    after = _cursor()
    try:
        stream = service.follow_job(context(), principal, job_id, after)
    except TooManyStreams as exc:
        body, status = error_response(exc)
        refused = make_response(body, status)
        refused.headers["Retry-After"] = str(exc.retry_after_s)
        return refused
    response = Response(
        stream_with_context(_sse(stream)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # A client gone before the first byte: the stream is never read, but closed.
    response.call_on_close(stream.close)
    return response


def _cursor() -> str | None:
    """The first event id given, each one given checked (400 naming where it came)."""
    given = {
        "Last-Event-ID": request.headers.get("Last-Event-ID"),
        "last_event_id": request.args.get("last_event_id"),
        "after": request.args.get("after"),
    }
    found = [parse_event_id(given[name], name) for name in CURSOR_SOURCES if given[name]]
    return found[0] if found else None


def _sse(stream: LiveStream) -> Iterator[str]:
    yield "retry: 2000\n\n"
    for event in stream:
        yield ": keep-alive\n\n" if event is None else event.to_sse()
    if stream.job_ended:
        yield "event: end\ndata: {}\n\n"
    else:
        # Not "end": the stream reached JOBSYS_STREAM_MAX_S. EventSource reconnects
        # by itself when the body ends (after ``retry``), jobsys.Client on this
        # event; both send Last-Event-ID and resume after the last event sent here.
        yield f"event: reconnect\ndata: {json.dumps({'reason': LIFETIME_UP})}\n\n"
