"""The client's fast JSON path (orjson) must never change a value: integers past
64 bits go through the stdlib both ways."""

from __future__ import annotations

import json

from jobsys.client.http import _dumps, _loads, _spec_with_items


def test_big_integers_survive_decoding() -> None:
    page = {"results": [{"ok": True, "value": 2**70}, {"ok": True, "value": -(2**63) - 1}]}
    assert _loads(json.dumps(page).encode()) == page


def test_ordinary_pages_decode_alike() -> None:
    page = {"results": [{"ok": True, "value": [1.5, "x", None, {"a": 10**18}]}], "next": None}
    assert _loads(json.dumps(page).encode()) == page


def test_items_encode_like_the_stdlib() -> None:
    for value in (2**70, 1.1, "é", [1, {"k": None}]):
        assert json.loads(_dumps(value)) == value
    spec = {"name": "m", "tags": []}
    body = b"".join(_spec_with_items(spec, {"kind": "function"}, range(2500)))
    assert json.loads(body)["steps"][0]["items"] == list(range(2500))
