"""The floor under ``POST /api/jobs``: a Flask app that only parses the JSON
body and answers 202, served by the same gunicorn command as the jobsys web
app (``jobsys.stack.web_command``: 2 processes x 32 threads, access log on).

No token, no database, no broker: no submit through this web stack can be
faster, so the bench shows how much of the raw ``apply_async`` rate the HTTP
layer alone leaves on this machine (a reference row, not a target).
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/api/jobs")
def accept() -> tuple[Response, int]:
    body = request.get_json()
    return jsonify({"id": "0" * 32, "name": body.get("name")}), 202
