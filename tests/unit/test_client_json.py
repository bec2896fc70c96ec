"""The client's fast JSON path (orjson) must never change a value: integers past
64 bits go through the stdlib both ways."""

from __future__ import annotations

import json

from jobsys.client.http import _spec_with_items
from jobsys.fastjson import dumps as _dumps
from jobsys.fastjson import loads as _loads


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


def test_plain_scalars_travel_as_themselves_and_nan_pickled() -> None:
    """The scalar fast path of ``_json_faithful`` keeps its rule: what JSON
    cannot bring back unchanged (NaN, infinities) is pickled."""
    from jobsys.envelope import is_pickled, to_wire

    for value in (0, 2**70, -1, True, None, "x", 1.25):
        assert to_wire(value) == value and not is_pickled(to_wire(value))
    for value in (float("nan"), float("inf"), (1, 2)):
        assert is_pickled(to_wire(value))
