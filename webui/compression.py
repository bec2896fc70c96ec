"""gzip both ways for the JSON API, so a million-item map travels as a few
megabytes: request bodies sent with ``Content-Encoding: gzip`` are inflated
(with the same size limit as plain bodies, so a small "zip bomb" cannot grow
into gigabytes), and JSON answers are compressed for clients that accept it.
"""

from __future__ import annotations

import gzip
import zlib

from flask import Flask, Request, Response, request

from jobsys.errors import PayloadTooLarge, SpecError
from webui.input_guard import body_limit

#: Answers smaller than this are sent as they are: gzip would not pay for itself.
MIN_SIZE = 4096


def request_body(incoming: Request) -> bytes:
    """The request body, inflated if it came gzip-encoded."""
    raw = incoming.get_data(cache=False)
    encoding = (incoming.headers.get("Content-Encoding") or "").strip().lower()
    if not encoding or encoding == "identity":
        return raw
    if encoding != "gzip":
        raise SpecError({"Content-Encoding": f"{encoding!r} is not supported: send gzip or none"})
    limit, setting = body_limit()  # this route's limit, on the inflated size
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise SpecError({"body": f"the gzip body is damaged: {exc}"}) from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge({"body": f"inflated, the request is over {limit} bytes ({setting})"})
    if not inflater.eof:
        raise SpecError({"body": "the gzip body is cut short"})
    return body


def init_app(app: Flask) -> None:
    @app.after_request
    def _compress(response: Response) -> Response:
        if (
            response.mimetype != "application/json"
            or response.direct_passthrough
            or response.status_code < 200
            or "Content-Encoding" in response.headers
            or "gzip" not in (request.headers.get("Accept-Encoding") or "").lower()
        ):
            return response
        data = response.get_data()
        if len(data) < MIN_SIZE:
            return response
        response.set_data(gzip.compress(data, compresslevel=5))
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
        return response
