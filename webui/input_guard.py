"""Refusing, before any view runs, URLs and HTML form fields holding text no
database can store (NUL characters, lone surrogates; see ``jobsys.storable``).

JSON bodies are checked where they are parsed (``api.json_body``). Form bodies
are read here only for the HTML pages: the API reads its body raw (a client may
send JSON labelled as a form), and the Flower proxy passes its body on unread.
"""

from __future__ import annotations

from flask import Flask, request

from jobsys.storable import check_text

#: Blueprints whose request bodies must stay unread here.
RAW_BODIES = frozenset({"api", "flower"})


def init_app(app: Flask) -> None:
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
