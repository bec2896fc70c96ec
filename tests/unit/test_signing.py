from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pytest

from jobsys import envelope
from jobsys.errors import SignatureError
from jobsys.signing import Binding, Purpose, Signer, b64encode

KEY = Signer.from_secret("the-right-key-0123456789")
OTHER = Signer.from_secret("another-key-9876543210")

FN_A = Binding(Purpose.FUNCTION, "a" * 32, "1" * 32)
FN_B = Binding(Purpose.FUNCTION, "b" * 32, "2" * 32)
ITEMS_A = Binding(Purpose.ITEMS, "a" * 32, "1" * 32)
RESULT_A = Binding(Purpose.RESULT, "a" * 32, "1" * 32)


class Booby:
    """Unpickling this writes a file: proof that loads() ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (_touch, (str(self.path), "x"))


def _touch(path: str, _: str) -> None:
    Path(path).write_text("unpickled!")


def legacy_sign(signer: Signer, data: bytes) -> str:
    """A blob as jobsys signed them before bindings: a MAC over the bytes alone."""
    mac = hmac.new(signer.key, data, hashlib.sha256).hexdigest()
    return f"jobsys-signed-v1.{mac}.{b64encode(data)}"


def test_round_trip() -> None:
    assert KEY.loads(KEY.dumps({"a": (1, 2)}, FN_A), FN_A) == {"a": (1, 2)}


@pytest.mark.parametrize(
    "how",
    [
        "tampered",
        "other key",
        "unsigned",
        "not a string",
        "rebound",
        "other job",
        "as items",
        "result as function",
        "legacy tampered",
        "legacy refused",
    ],
)
def test_bad_blobs_are_refused_before_unpickling(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "marker"
    evil = cloudpickle.dumps(Booby(marker))
    blob: object
    expect, legacy = FN_A, True
    if how == "tampered":
        *head, _payload = KEY.sign(cloudpickle.dumps(1), FN_A).split(".")
        blob = ".".join([*head, b64encode(evil)])
    elif how == "other key":
        blob = OTHER.sign(evil, FN_A)
    elif how == "unsigned":
        blob = b64encode(evil)
    elif how == "not a string":
        blob = evil
    elif how == "rebound":  # the clear-text binding edited to say job B: the MAC covers it
        blob = KEY.sign(evil, FN_A).replace("a" * 32, "b" * 32)
        expect = FN_B
    elif how == "other job":  # a function signed for job A offered as job B's
        blob, expect = KEY.sign(evil, FN_A), FN_B
    elif how == "as items":  # job A's function offered as one of its items
        blob, expect = KEY.sign(evil, FN_A), ITEMS_A
    elif how == "result as function":
        blob = KEY.sign(evil, RESULT_A)
    elif how == "legacy tampered":
        mac = legacy_sign(KEY, cloudpickle.dumps(1)).split(".")[1]
        blob = f"jobsys-signed-v1.{mac}.{b64encode(evil)}"
    else:
        blob, legacy = legacy_sign(KEY, evil), False
    with pytest.raises(SignatureError) as caught:
        KEY.loads(blob, expect, legacy=legacy)
    assert not marker.exists()
    # Nothing of the blob is quoted back: errors end up on pages and in logs.
    shown = caught.value.message
    assert b64encode(evil)[:40] not in shown and b64encode(evil)[-40:] not in shown
    if isinstance(blob, str):
        assert blob not in shown and blob.split(".")[-1][:40] not in shown
    # The same payload signed for the right place does run: the test would notice.
    KEY.loads(KEY.sign(evil, FN_A), FN_A)
    assert marker.read_text() == "unpickled!"


def test_a_binding_mismatch_names_both_places() -> None:
    with pytest.raises(SignatureError) as caught:
        KEY.verify(KEY.sign(b"x", FN_A), FN_B)
    assert f"the function of job {'a' * 32}" in caught.value.message
    assert f"offered as the function of job {'b' * 32}" in caught.value.message


def test_blobs_signed_before_bindings_still_verify_where_allowed() -> None:
    old = legacy_sign(KEY, cloudpickle.dumps((1, 2)))
    assert KEY.loads(old, FN_A) == (1, 2)
    assert KEY.verify(old, None) == cloudpickle.dumps((1, 2))
    with pytest.raises(SignatureError, match="JOBSYS_ACCEPT_LEGACY_SIGNATURES"):
        KEY.loads(old, FN_A, legacy=False)
    with pytest.raises(SignatureError, match="another JOBSYS_SECRET_KEY"):
        OTHER.loads(old, FN_A)
    # A copy re-signs it for its new place, where it then verifies with bindings only.
    with pytest.raises(SignatureError, match="JOBSYS_ACCEPT_LEGACY_SIGNATURES"):
        KEY.resign(old, FN_A, FN_B, legacy=False)
    moved = KEY.resign(old, FN_A, FN_B, legacy=True)
    assert moved.startswith("jobsys-signed-v2.function.")
    assert KEY.loads(moved, FN_B, legacy=False) == (1, 2)
    with pytest.raises(SignatureError):
        KEY.loads(moved, FN_A)


def test_resign_checks_where_the_blob_came_from_and_keeps_its_use() -> None:
    blob = KEY.sign(b"data", RESULT_A)
    with pytest.raises(SignatureError):
        KEY.resign(blob, FN_A, FN_B, legacy=True)  # not job A's function: refused, not laundered
    with pytest.raises(SignatureError, match="keeps its use"):
        KEY.resign(blob, RESULT_A, FN_B, legacy=True)  # a result never becomes code
    moved = KEY.resign(blob, RESULT_A, replace(RESULT_A, job="b"), legacy=True)
    assert KEY.verify(moved, replace(RESULT_A, job="b")) == b"data"


def test_bindings_hold_only_ids() -> None:
    with pytest.raises(ValueError):
        Binding(Purpose.FUNCTION, "a.b", "1")
    with pytest.raises(ValueError):
        Binding("code", "a", "1")  # type: ignore[arg-type]
    assert (
        Binding.for_schedule(Purpose.ITEMS, "s1", 0).describe() == "the items of schedule s1 step 0"
    )


def test_envelopes_keep_python_types() -> None:
    values = [1, "s", [1, 2], {"a": None}, (1, 2), {1, 2}, float("nan"), {"$pickle": "x"}]
    for value in values:
        wire = envelope.to_wire(value)
        back = envelope.from_wire(wire)
        if value == value:  # NaN is never equal to itself
            assert back == value and type(back) is type(value)
    assert envelope.to_wire([1, 2]) == [1, 2]
    assert envelope.is_pickled(envelope.to_wire((1, 2)))


def test_service_signs_and_worker_verifies(tmp_path: Path) -> None:
    wire = envelope.to_wire((1, 2))
    stored = envelope.sign_wire(wire, KEY, "items", ITEMS_A)
    assert envelope.decode(stored, KEY, ITEMS_A) == (1, 2)
    with pytest.raises(SignatureError):
        envelope.decode(stored, OTHER, ITEMS_A)
    with pytest.raises(SignatureError):
        envelope.decode(stored, KEY, FN_A)
    # Raw client pickles never reach a worker unsigned: refused without being unpickled ...
    marker = tmp_path / "marker"
    trap = envelope.to_wire(Booby(marker))
    assert envelope.is_pickled(trap)
    with pytest.raises(SignatureError):
        envelope.decode(trap, KEY, ITEMS_A)
    assert not marker.exists()
    # ... while the service's signed copy of the same pickle is the one a worker runs.
    envelope.decode(envelope.sign_wire(trap, KEY, "items", ITEMS_A), KEY, ITEMS_A)
    assert marker.read_text() == "unpickled!"


def test_results_carry_a_repr_for_readers(tmp_path: Path) -> None:
    result = envelope.ok({1, 2}, KEY, RESULT_A)
    assert result["ok"] is True
    assert result["value"]["repr"] == "{1, 2}"
    wire = envelope.unsign_for_wire(result["value"], KEY, RESULT_A, legacy=False)
    assert envelope.from_wire(wire) == {1, 2}
    # any binding: no unpickling
    assert envelope.unsign_for_wire(result["value"], KEY, legacy=False) == wire
    marker = tmp_path / "marker"
    trapped = envelope.ok(Booby(marker), KEY, RESULT_A)["value"]
    for expect in (RESULT_A, None):  # handed on for a client to unpickle, never here
        assert envelope.is_pickled(envelope.unsign_for_wire(trapped, KEY, expect, legacy=False))
    assert not marker.exists()
    with pytest.raises(SignatureError):
        envelope.unsign_for_wire(result["value"], KEY, FN_A, legacy=False)
    moved = envelope.resign(
        result["value"], KEY, RESULT_A, replace(RESULT_A, step="2"), legacy=False
    )
    assert moved["repr"] == "{1, 2}"
    err = envelope.error(ValueError("boom"))
    assert err["error"]["type"] == "ValueError" and "boom" in err["error"]["traceback"]
