"""Refusing, before any view runs, URLs and HTML form fields holding text no
database can store (NUL characters, lone surrogates; see ``jobsys.storable``),
and setting how large each JSON route's body may be.

JSON bodies are checked where they are parsed (``api.json_body``). Form bodies
are read here only for the HTML pages: the API reads its body raw (a client may
send JSON labelled as a form), and the Flower proxy passes its body on unread.

Body limits: only the API routes that carry specs or items (``SPEC_ROUTES``)
take bodies of up to ``JOBSYS_MAX_PAYLOAD_BYTES``; every other API route takes
``JOBSYS_MAX_JSON_BODY_BYTES`` (64 KiB): a token, a user or a cancel needs no
more, and a large body costs memory to parse whatever the route then does with
it. The limit is the request's ``max_content_length``, which Werkzeug enforces
on the raw body and ``compression.request_body`` on the inflated one.

A body sent chunked (no Content-Length) Werkzeug does not refuse: under a
server that ends the stream itself (``wsgi.input_terminated``: gunicorn,
Werkzeug's own) it reads up to the limit and stops, so a view got the first
``limit`` bytes as though they were all (a JSON body padded with spaces even
parsed), and the Flower proxy forwarded a cut body. Such a body is read here,
before any view, up to one byte past the limit: over it is 413 naming the
setting, under it the view reads it whole.
"""

from __future__ import annotations

import io
import logging

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from jobsys.storable import check_text

#: Blueprints whose request bodies must stay unread here.
RAW_BODIES = frozenset({"api", "flower"})
#: API endpoints whose bodies are specs, items or template variables.
SPEC_ROUTES = frozenset(
    {
        "api.submit_job",
        "api.create_schedule",
        "api.update_schedule",
        "api.start_template",
        "api.render_template",
    }
)


def _small_body() -> bool:
    return request.blueprint == "api" and request.endpoint not in SPEC_ROUTES


def body_limit() -> tuple[int, str]:
    """This request's body limit in bytes, and the setting that sets it."""
    limit = request.max_content_length
    assert limit is not None  # create_app sets MAX_CONTENT_LENGTH
    smaller = limit < current_app.config["MAX_CONTENT_LENGTH"]
    return limit, "JOBSYS_MAX_JSON_BODY_BYTES" if smaller else "JOBSYS_MAX_PAYLOAD_BYTES"


log = logging.getLogger(__name__)

#: Whether this process has warned of an X-Forwarded-For it ignores (once is enough).
_WARNED_PROXY = [False]


def _warn_of_an_untrusted_proxy() -> None:
    """A request with X-Forwarded-For while JOBSYS_TRUST_PROXY is off most likely
    came through a proxy: then every client has the proxy's address, and five
    wrong passwords from anyone lock everyone out of password sign-in."""
    if _WARNED_PROXY[0] or "X-Forwarded-For" not in request.headers:
        return
    _WARNED_PROXY[0] = True
    log.warning(
        "a request came with X-Forwarded-For but JOBSYS_TRUST_PROXY is off: every "
        "client behind that proxy counts as the proxy's address %s (sign-in throttling, "
        "audit); set JOBSYS_TRUST_PROXY=true if exactly one proxy you run sets the header",
        request.remote_addr,
    )


#: Bytes read at a time from a chunked body.
READ_CHUNK = 64 * 1024


def _read_chunked_body() -> None:
    """Read a chunked body now, to one byte past the limit: 413 if it is over,
    else hand it to the views in full (as ``wsgi.input``)."""
    environ = request.environ
    if (
        request.content_length is not None
        or not environ.get("wsgi.input_terminated")
        or "stream" in request.__dict__  # read already (Werkzeug caches the stream)
    ):
        return
    limit, _setting = body_limit()
    stream = environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()  # webui.errors names the limit and the setting
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))


def init_app(app: Flask) -> None:
    settings = app.extensions["jobsys"].settings
    small = settings.max_json_body_bytes
    if not settings.trust_proxy:
        app.before_request(_warn_of_an_untrusted_proxy)

    @app.before_request
    def _limit_json_bodies() -> None:
        if _small_body():
            request.max_content_length = min(small, app.config["MAX_CONTENT_LENGTH"])
            # Said up front, so a route that never reads its body answers the same.
            if (request.content_length or 0) > request.max_content_length:
                raise RequestEntityTooLarge()
        _read_chunked_body()

    @app.before_request
    def _refuse_unstorable_text() -> None:
        check_text(request.path, "path")
        for key, value in request.args.items(multi=True):
            check_text(key, "query")
            check_text(value, f"query.{key}")
        if request.blueprint in RAW_BODIES or request.method in ("GET", "HEAD"):
            return
        for key, value in request.form.items(multi=True):
            check_text(key, "form")
            check_text(value, key)
