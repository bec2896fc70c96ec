"""The API's OpenAPI description: ``openapi.yaml`` beside the routes, written by
hand so it says what the API promises (not what a generator guessed), served as
JSON at ``GET /api/openapi.json`` and fuzzed against the app in the reliability
suite. A test keeps its paths and the API's routes the same."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

SOURCE = Path(__file__).with_name("openapi.yaml")


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    return loaded
