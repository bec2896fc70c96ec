"""HMAC signatures for pickled payloads.

Unpickling runs code. Workers therefore unpickle only blobs that carry a
valid HMAC made with the shared secret; the web app signs a pickle only after
the caller's token proved the right to submit code, and workers sign the
results they pickle. The check happens before ``loads`` is ever called.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import cloudpickle

from jobsys.errors import SignatureError

PREFIX = "jobsys-signed-v1"


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SignatureError("payload is not valid base64") from exc


@dataclass(frozen=True)
class Signer:
    """Signs and verifies byte blobs as ``jobsys-signed-v1.<mac>.<payload>`` strings."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Signer:
        return cls(secret.encode("utf-8"))

    def _mac(self, data: bytes) -> str:
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def sign(self, data: bytes) -> str:
        return f"{PREFIX}.{self._mac(data)}.{b64encode(data)}"

    def verify(self, blob: Any) -> bytes:
        """The signed bytes, or SignatureError; never unpickles anything."""
        if not isinstance(blob, str) or not blob.startswith(PREFIX + "."):
            raise SignatureError(
                "refusing an unsigned payload: pickles must be submitted through the jobsys API"
            )
        try:
            _, mac, payload = blob.split(".", 2)
        except ValueError as exc:
            raise SignatureError("malformed signed payload") from exc
        data = b64decode(payload)
        if not hmac.compare_digest(mac, self._mac(data)):
            raise SignatureError(
                "refusing a payload whose signature does not match: it was altered or "
                "signed with another JOBSYS_SECRET_KEY"
            )
        return data

    def dumps(self, obj: Any) -> str:
        return self.sign(cloudpickle.dumps(obj))

    def loads(self, blob: Any) -> Any:
        data = self.verify(blob)  # raises before any byte is unpickled
        return cloudpickle.loads(data)
