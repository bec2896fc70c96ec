"""``jobsys.secret(name)``: a secret's value, from inside a function step's code.

The worker puts each secret a step names (``"secrets": ["stripe"]``) in the
environment of the process that runs its chunk, under the secret's own name;
this reads it back with an error that says how to ask for it, rather than a
bare KeyError.
"""

from __future__ import annotations

import os

from jobsys.errors import JobsysError


class SecretNotGiven(JobsysError):
    """Raised when code asks for a secret its step did not name."""


def secret(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SecretNotGiven(
            f"no secret {name!r} here: name it in the function step, "
            f'"secrets": ["{name}"] (and an admin sets it with `jobsys secrets set {name}`)'
        )
    return value


__all__ = ["SecretNotGiven", "secret"]
