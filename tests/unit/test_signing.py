from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle
import pytest

from jobsys import envelope
from jobsys.errors import SignatureError
from jobsys.signing import Signer, b64encode

KEY = Signer.from_secret("the-right-key-0123456789")
OTHER = Signer.from_secret("another-key-9876543210")


class Booby:
    """Unpickling this writes a file: proof that loads() ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (_touch, (str(self.path), "x"))


def _touch(path: str, _: str) -> None:
    Path(path).write_text("unpickled!")


def test_round_trip() -> None:
    assert KEY.loads(KEY.dumps({"a": (1, 2)})) == {"a": (1, 2)}


@pytest.mark.parametrize("how", ["tampered", "other key", "unsigned", "not a string"])
def test_bad_blobs_are_refused_before_unpickling(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "marker"
    evil = cloudpickle.dumps(Booby(marker))
    blob: object
    if how == "tampered":
        good = KEY.sign(cloudpickle.dumps(1))
        prefix, mac, _ = good.split(".", 2)
        blob = f"{prefix}.{mac}.{b64encode(evil)}"
    elif how == "other key":
        blob = OTHER.sign(evil)
    elif how == "unsigned":
        blob = b64encode(evil)
    else:
        blob = evil
    with pytest.raises(SignatureError):
        KEY.loads(blob)
    assert not marker.exists()
    # The same payload signed with the right key does run: the test would notice.
    KEY.loads(KEY.sign(evil))
    assert marker.read_text() == "unpickled!"


def test_envelopes_keep_python_types() -> None:
    values = [1, "s", [1, 2], {"a": None}, (1, 2), {1, 2}, float("nan"), {"$pickle": "x"}]
    for value in values:
        wire = envelope.to_wire(value)
        back = envelope.from_wire(wire)
        if value == value:  # NaN is never equal to itself
            assert back == value and type(back) is type(value)
    assert envelope.to_wire([1, 2]) == [1, 2]
    assert envelope.is_pickled(envelope.to_wire((1, 2)))


def test_service_signs_and_worker_verifies() -> None:
    wire = envelope.to_wire((1, 2))
    stored = envelope.sign_wire(wire, KEY, "items")
    assert envelope.decode(stored, KEY) == (1, 2)
    with pytest.raises(SignatureError):
        envelope.decode(stored, OTHER)
    # raw client pickles never reach a worker unsigned
    with pytest.raises(SignatureError):
        envelope.decode(wire, KEY)
    assert pickle.loads(cloudpickle.dumps(1)) == 1


def test_results_carry_a_repr_for_readers() -> None:
    result = envelope.ok({1, 2}, KEY)
    assert result["ok"] is True
    assert result["value"]["repr"] == "{1, 2}"
    wire = envelope.unsign_for_wire(result["value"], KEY)
    assert envelope.from_wire(wire) == {1, 2}
    err = envelope.error(ValueError("boom"))
    assert err["error"]["type"] == "ValueError" and "boom" in err["error"]["traceback"]
