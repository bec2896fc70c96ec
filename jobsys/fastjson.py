"""JSON by orjson, exactly: the standard library takes over where orjson would
refuse a value or change it (integers past 64 bits)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: A run of 19 digits: maybe an integer past 64 bits, which orjson would read as
#: a float (silently losing digits); such a text goes through the stdlib.
_LONG_NUMBER = re.compile(rb"\d{19}")


def dumps(value: Any) -> bytes:
    """JSON bytes; the stdlib for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def loads(raw: bytes) -> Any:
    """Parsed JSON, by orjson unless the text may hold an integer it cannot keep."""
    if _LONG_NUMBER.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)
