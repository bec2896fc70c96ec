"""Server-sent events: a job's status, progress and log lines as they happen."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request, stream_with_context

from jobsys import service
from jobsys.auth import Principal
from jobsys.events import Event
from webui.principal import context


def event_response(principal: Principal, job_id: str) -> Response:
    """Replay from ``Last-Event-ID`` (header, or ``?last_event_id=`` for
    clients that cannot set it), then follow live until the job ends."""
    after = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    events = service.follow_job(context(), principal, job_id, after)
    return Response(
        stream_with_context(_sse(events)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(events: Iterator[Event | None]) -> Iterator[str]:
    yield "retry: 2000\n\n"
    for event in events:
        yield ": keep-alive\n\n" if event is None else event.to_sse()
    yield "event: end\ndata: {}\n\n"
