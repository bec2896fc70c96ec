"""The keys jobsys keeps in its data folder when none is configured.

Three keys, each for one purpose, so that knowing one gives none of the others:
``secret.key`` signs pickles (whoever holds it can have workers run code),
``session.key`` signs web sessions and CSRF tokens, and ``secrets.key``
(a Fernet key) encrypts named secrets at rest. Each is made on first start,
0600 in the 0700 data folder, so every local process agrees on it without
configuration; several hosts must be given the same values instead.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from jobsys.datadir import private_folder
from jobsys.errors import ConfigError


def new_random_key() -> str:
    return secrets.token_urlsafe(32)


def new_fernet_key() -> str:
    """32 random bytes, url-safe base64: the form ``cryptography.fernet.Fernet`` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def check_fernet_key(key: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            "JOBSYS_SECRETS_KEY is not a Fernet key (32 bytes in url-safe base64): "
            "make one with `jobsys secrets new-key`"
        )
    return key


def local_key(data_dir: Path, name: str, *, make: Callable[[], str] = new_random_key) -> str:
    """Read ``<data_dir>/<name>``, or create it (mode 0600) with ``make()``.

    Whoever reads a key file gets what the key protects; a wider mode found
    later is fixed by ``datadir.tighten``.
    """
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    private_folder(data_dir)
    tmp = data_dir / f".{name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(make())
    # link() is atomic and fails if the name exists: when two processes start
    # together, one key wins and both read the winner.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


__all__ = ["check_fernet_key", "local_key", "new_fernet_key", "new_random_key"]
