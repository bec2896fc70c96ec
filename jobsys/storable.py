"""Text every database jobsys runs on can store, checked where input comes in.

PostgreSQL text cannot hold NUL characters, and no UTF-8 database can hold a
lone UTF-16 surrogate (JSON can spell both: ``"\\u0000"``, ``"\\ud800"``).
SQLite stores a NUL and raises ``UnicodeEncodeError`` on a surrogate, so such
input passed every SQLite test and would have been a 500 in production.
Refused up front, it is a 400 that names the problem on both.
"""

from __future__ import annotations

import re
from typing import Any

from jobsys.errors import SpecError

#: The JSON escapes that can spell unstorable text. Only a body that holds one
#: is walked string by string; every other body costs one regex search.
_RISKY = r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})"
_RISKY_TEXT, _RISKY_BYTES = re.compile(_RISKY), re.compile(_RISKY.encode())


def problem_with(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "text may not contain NUL characters (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text may not contain a lone UTF-16 surrogate (\\ud800-\\udfff): send valid Unicode"
    return None


def check_text(text: str, field: str) -> None:
    problem = problem_with(text)
    if problem:
        raise SpecError({field: problem})


def check_json(raw: str | bytes, parsed: Any, field: str) -> None:
    """SpecError naming ``field`` if the JSON ``raw`` parsed into unstorable text."""
    risky = _RISKY_BYTES.search(raw) if isinstance(raw, bytes) else _RISKY_TEXT.search(raw)
    if not risky:
        return
    stack = [parsed]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            check_text(node, field)
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
