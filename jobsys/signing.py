"""HMAC signatures for pickled payloads, bound to what they are for.

Unpickling runs code. Workers therefore unpickle only blobs that carry a
valid HMAC made with the shared secret; the web app signs a pickle only after
the caller's token proved the right to submit code, and workers sign the
results they pickle. The check happens before ``loads`` is ever called.

A signature says more than "jobsys made this": it covers a ``Binding`` (the
blob's purpose, ``function``, ``items`` or ``result``, and the job and step it
belongs to), and a verifier names the binding it expects. So a function signed
for job A cannot be run as job B's, nor an item or a result as a function,
even by someone who can write to the database or the broker: they can move a
blob, but not re-sign it. Where a stored blob is copied into a new job (a
rerun, a resume, a schedule firing) the server verifies it for its old place
and signs it afresh for the new one, after checking the creator's rights.

Blobs signed before bindings existed (``jobsys-signed-v1``: a MAC over the
bytes alone) are still accepted where ``legacy`` allows it (see
``Settings.accept_legacy_signatures``); nothing signs that format any more.

Error messages never quote a blob: it is a pickle, and pages and logs show them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import cloudpickle

from jobsys.errors import SignatureError

#: Blobs from before bindings: ``jobsys-signed-v1.<mac>.<payload>``.
LEGACY_PREFIX = "jobsys-signed-v1"
#: ``jobsys-signed-v2.<purpose>.<job>.<step>.<mac>.<payload>``; the MAC covers all of it.
PREFIX = "jobsys-signed-v2"

#: Job and step parts of a binding: ids (hex), ``schedule:<id>``, a position. No dots.
_PART = re.compile(r"^[A-Za-z0-9:_-]{1,100}$")


class Purpose(enum.StrEnum):
    """What a signed blob may be used as."""

    FUNCTION = "function"
    ITEMS = "items"
    RESULT = "result"


@dataclass(frozen=True)
class Binding:
    """The one place a signed blob is valid: its purpose, job and step.

    ``job`` and ``step`` are a job's and step's ids; a schedule's stored spec
    uses ``schedule:<id>`` and the step's position (see ``for_schedule``).
    """

    purpose: Purpose
    job: str
    step: str

    def __post_init__(self) -> None:
        if not isinstance(self.purpose, Purpose):
            object.__setattr__(self, "purpose", Purpose(self.purpose))
        for part in (self.job, self.step):
            if not isinstance(part, str) or not _PART.match(part):
                raise ValueError(f"a binding's job and step are ids, not {part!r}")

    @classmethod
    def for_schedule(cls, purpose: Purpose, schedule_id: str, position: int) -> Binding:
        return cls(purpose, f"schedule:{schedule_id}", str(position))

    def header(self) -> bytes:
        """What the MAC covers before the payload; newlines cannot occur in the parts."""
        return f"{PREFIX}\n{self.purpose.value}\n{self.job}\n{self.step}\n".encode("ascii")

    def describe(self) -> str:
        return f"the {self.purpose.value} of {self._owner()}"

    def _owner(self) -> str:
        if self.job.startswith("schedule:"):
            return f"schedule {self.job.removeprefix('schedule:')} step {self.step}"
        return f"job {self.job} step {self.step}"


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SignatureError("payload is not valid base64") from exc


_UNSIGNED = "refusing an unsigned payload: pickles must be submitted through the jobsys API"
_MALFORMED = "refusing a malformed signed payload"
_MISMATCH = (
    "refusing a payload whose signature does not match: it was altered or "
    "signed with another JOBSYS_SECRET_KEY"
)
_LEGACY_OFF = (
    "refusing a payload signed before signatures named their job and step "
    "(jobsys-signed-v1) while JOBSYS_ACCEPT_LEGACY_SIGNATURES is off: "
    "rerun the job, which signs its code afresh"
)


@dataclass(frozen=True)
class Signer:
    """Signs and verifies byte blobs for one ``Binding`` each."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Signer:
        return cls(secret.encode("utf-8"))

    def _mac(self, data: bytes) -> str:
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def sign(self, data: bytes, binding: Binding) -> str:
        mac = self._mac(binding.header() + data)
        parts = (PREFIX, binding.purpose.value, binding.job, binding.step, mac, b64encode(data))
        return ".".join(parts)

    def verify(self, blob: Any, expect: Binding | None, *, legacy: bool = True) -> bytes:
        """The signed bytes, or SignatureError; never unpickles anything.

        ``expect`` is the binding the blob must carry. None accepts any binding
        and is only for readers that pass the bytes on without unpickling them
        (the results API); whoever unpickles must name the binding.
        ``legacy`` accepts a ``jobsys-signed-v1`` blob, which names no binding.
        """
        if isinstance(blob, str) and blob.startswith(PREFIX + "."):
            return self._verify_bound(blob, expect)
        if isinstance(blob, str) and blob.startswith(LEGACY_PREFIX + "."):
            if not legacy:
                raise SignatureError(_LEGACY_OFF)
            return self._verify_legacy(blob)
        raise SignatureError(_UNSIGNED)

    def _verify_bound(self, blob: str, expect: Binding | None) -> bytes:
        parts = blob.split(".")
        if len(parts) != 6:
            raise SignatureError(_MALFORMED)
        _, purpose, job, step, mac, payload = parts
        try:
            found = Binding(Purpose(purpose), job, step)
        except ValueError as exc:
            raise SignatureError(_MALFORMED) from exc
        data = b64decode(payload)
        if not hmac.compare_digest(mac, self._mac(found.header() + data)):
            raise SignatureError(_MISMATCH)
        # Only now is the binding known to be jobsys's own, and safe to name.
        if expect is not None and found != expect:
            raise SignatureError(
                f"refusing {found.describe()} offered as {expect.describe()}: a signed "
                "payload serves only the job, step and use it was signed for"
            )
        return data

    def _verify_legacy(self, blob: str) -> bytes:
        parts = blob.split(".")
        if len(parts) != 3:
            raise SignatureError(_MALFORMED)
        _, mac, payload = parts
        data = b64decode(payload)
        if not hmac.compare_digest(mac, self._mac(data)):
            raise SignatureError(_MISMATCH)
        return data

    def resign(self, blob: Any, source: Binding, target: Binding, *, legacy: bool) -> str:
        """The blob verified for where it was and signed for where it goes.

        Callers check the new job's creator's rights first: this only moves a
        signature to another job or step, never to another use (a result never
        becomes a function). ``legacy`` accepts (and so upgrades) a v1 blob,
        which jobsys signed for this very place, while the operator allows them.
        """
        if source.purpose != target.purpose:
            raise SignatureError(
                f"refusing to re-sign {source.describe()} as {target.describe()}: "
                "a signed payload keeps its use"
            )
        return self.sign(self.verify(blob, source, legacy=legacy), target)

    def dumps(self, obj: Any, binding: Binding) -> str:
        return self.sign(cloudpickle.dumps(obj), binding)

    def loads(self, blob: Any, expect: Binding, *, legacy: bool = True) -> Any:
        data = self.verify(blob, expect, legacy=legacy)  # raises before any byte is unpickled
        return cloudpickle.loads(data)
