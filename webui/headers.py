"""Security headers on every answer: pages, JSON, static files, errors.

jobsys's own pages load scripts and styles only from ``/static`` (no inline
``<script>``, no ``on...=`` handlers, no ``style=`` attributes), so their
Content-Security-Policy allows nothing inline: a value that slipped past
escaping into a page still could not run. No page may be framed (click-jacking
on the Cancel and Start buttons), no answer is sniffed into another type, and
no other site learns our URLs (job ids, filters) from the Referer.

Flower's pages under ``/flower/`` are Flower's own HTML, proxied: they carry
inline scripts (the workers page) and ``style=`` attributes, and its
DataTables sets styles from script. They get ``FLOWER_POLICY``, which allows
inline script and style but still only from this origin: no other host's
script, no framing, no plugins. A sign-in is needed to reach them at all.
"""

from __future__ import annotations

from flask import Flask, Response, request

#: jobsys's own pages and every API answer.
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
#: Flower's proxied pages, which need inline script and style (see above).
FLOWER_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def policy_for(path: str) -> str:
    return FLOWER_POLICY if path == "/flower" or path.startswith("/flower/") else POLICY


def init_app(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        # Set, not added: Flower sends headers of its own, and ours decide.
        response.headers["Content-Security-Policy"] = policy_for(request.path)
        for name, value in HEADERS.items():
            response.headers[name] = value
        return response
