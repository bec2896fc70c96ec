"""How Python values cross JSON: items going to workers and results coming back.

A value that survives a JSON round trip unchanged (``loads(dumps(v)) == v``)
travels as itself. Anything else (tuples, sets, objects, NaN) travels as
``{"$pickle": ...}``: raw base64 between client and API, a signed blob (see
``jobsys.signing``) inside jobsys, bound to its purpose, job and step. Each item's outcome is
``{"ok": true, "value": ...}`` or ``{"ok": false, "error": {...}}``.
"""

from __future__ import annotations

import json
import math
import traceback
from typing import Any

import cloudpickle

from jobsys.errors import SignatureError, SpecError
from jobsys.signing import Binding, Signer, b64decode, b64encode

PICKLE_KEY = "$pickle"


#: Exact types whose every value survives JSON unchanged (a subclass, an IntEnum
#: say, still takes the round trip, which finds it comes back as something else).
_PLAIN = (str, int, bool, type(None))


def _json_faithful(value: Any) -> bool:
    # The common scalars without the round trip: it was most of a no-op item's
    # cost in the worker (each result) and the client (each item).
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is float:
        return math.isfinite(value)
    if isinstance(value, dict) and PICKLE_KEY in value:
        return False  # would be read back as an envelope
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def is_pickled(obj: Any) -> bool:
    return isinstance(obj, dict) and set(obj) <= {PICKLE_KEY, "repr"} and PICKLE_KEY in obj


# -- client side: raw pickles, no key needed --------------------------------


def to_wire(value: Any) -> Any:
    if _json_faithful(value):
        return value
    return {PICKLE_KEY: b64encode(cloudpickle.dumps(value))}


def from_wire(obj: Any) -> Any:
    """Decode a value the API sent back. Unpickling trusts the server you called."""
    if is_pickled(obj):
        return cloudpickle.loads(b64decode(obj[PICKLE_KEY]))
    return obj


# -- service side: sign what an authorised caller sent ----------------------


def sign_wire(obj: Any, signer: Signer, field: str, binding: Binding) -> Any:
    """A client's raw pickle signed for ``binding``; call only after the caller's
    right to submit code was checked."""
    if not is_pickled(obj):
        return obj
    raw = obj[PICKLE_KEY]
    if not isinstance(raw, str):
        raise SpecError({field: "a $pickle value must be a base64 string"})
    try:
        data = b64decode(raw)
    except SignatureError as exc:
        raise SpecError({field: "a $pickle value must be valid base64"}) from exc
    return {PICKLE_KEY: signer.sign(data, binding)}


def unsign_for_wire(
    obj: Any, signer: Signer, expect: Binding | None = None, *, legacy: bool
) -> Any:
    """A stored envelope as raw base64 for a client, its signature checked (for
    ``expect``, when given). Nothing is unpickled here, but a client may: so
    ``legacy`` (accept an unbound v1 blob) is the caller's explicit choice,
    ``JOBSYS_ACCEPT_LEGACY_SIGNATURES`` on the server's paths."""
    if not is_pickled(obj):
        return obj
    wire = {PICKLE_KEY: b64encode(signer.verify(obj[PICKLE_KEY], expect, legacy=legacy))}
    if "repr" in obj:
        wire["repr"] = obj["repr"]
    return wire


def resign(obj: Any, signer: Signer, source: Binding, target: Binding, *, legacy: bool) -> Any:
    """A stored envelope moved to a new job: verified for ``source``, signed for
    ``target``. The caller has checked the new job's creator's rights."""
    if not is_pickled(obj):
        return obj
    moved = {PICKLE_KEY: signer.resign(obj[PICKLE_KEY], source, target, legacy=legacy)}
    if "repr" in obj:
        moved["repr"] = obj["repr"]
    return moved


# -- worker side: verify, unpickle, and sign results -------------------------


def decode(obj: Any, signer: Signer, expect: Binding, *, legacy: bool = True) -> Any:
    """The value, unpickled only if its signature is good and names ``expect``."""
    if is_pickled(obj):
        return signer.loads(obj[PICKLE_KEY], expect, legacy=legacy)
    return obj


def encode(value: Any, signer: Signer, binding: Binding) -> Any:
    if _json_faithful(value):
        return value
    return {PICKLE_KEY: signer.dumps(value, binding), "repr": _short_repr(value)}


def ok(value: Any, signer: Signer, binding: Binding) -> dict[str, Any]:
    return {"ok": True, "value": encode(value, signer, binding)}


def error(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        },
    }


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the result
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
