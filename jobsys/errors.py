"""The jobsys error tree.

Every failure a caller can act on is a ``JobsysError``; the web app, the CLI
and the client map the families below to HTTP statuses and exit codes (that
mapping lives in ``webui/errors.py`` and ``jobsys/cli/main.py``, not here)::

    JobsysError
    ├── ConfigError        bad settings, raised at start-up
    ├── SpecError          invalid input; carries field -> message
    │   ├── PayloadTooLarge  a request body over the configured limit
    │   └── IdempotencyMismatch  an Idempotency-Key sent again with another request
    ├── AuthError
    │   ├── Unauthenticated  no or unknown credentials
    │   └── PermissionDenied credentials without the right needed
    ├── NotFoundError      job, token, ...
    ├── StateError         an action the job's current status forbids
    ├── DispatchError      the broker (Redis) could not be reached
    ├── DatabaseUnavailable  the database could not be reached
    ├── TooManyStreams     as many live event streams open as allowed (429)
    ├── ItemsFailed        Job.results() found items that raised (client side)
    └── StepError          raised on workers while running a step
        ├── StepFailed       a container exited non-zero
        ├── StepTimeout      a step ran past its timeout and was killed
        ├── StepCancelled    the job was cancelled while the step ran
        ├── ImageError       an image is missing or outside the allow-list
        ├── SignatureError   a pickled payload was unsigned or tampered with
        └── SecretUnavailable  a step's secret was deleted or cannot be decrypted here
"""

from __future__ import annotations

from typing import Any


class JobsysError(Exception):
    """Raised for every failure jobsys reports to a caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the API answers with; the client rebuilds the error from it."""
        return {"error": type(self).__name__, "message": self.message}


class ConfigError(JobsysError):
    """Raised at start-up when settings are missing or malformed."""


class SpecError(JobsysError):
    """Raised when submitted input is invalid; ``fields`` maps each bad field to its fix."""

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        self.fields = dict(fields)
        summary = "; ".join(f"{name}: {fix}" for name, fix in self.fields.items())
        super().__init__(message or f"invalid input: {summary}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "fields": self.fields}


class PayloadTooLarge(SpecError):
    """Raised when a request body is larger than ``JOBSYS_MAX_PAYLOAD_BYTES``."""


class IdempotencyMismatch(SpecError):
    """Raised when an ``Idempotency-Key`` comes back with a request other than its first."""


class AuthError(JobsysError):
    """Raised when a caller is not known or not allowed."""


class Unauthenticated(AuthError):
    """Raised when a request carries no credentials or unknown ones."""


class SignInRefused(AuthError):
    """Raised when an identity provider vouched for someone jobsys will not let in
    (no group of theirs maps to a role, their name is taken here, a bad answer)."""


class PermissionDenied(AuthError):
    """Raised when a known caller lacks the right an action needs."""

    def __init__(self, right: str, role: str, message: str | None = None) -> None:
        self.right = right
        super().__init__(
            message or f"the '{right}' right is needed; your role '{role}' does not have it"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "right": self.right}


class NotFoundError(JobsysError):
    """Raised when a job, token or other named thing does not exist."""


class StateError(JobsysError):
    """Raised when an action does not fit the current status (e.g. cancel a finished job)."""


class DispatchError(JobsysError):
    """Raised when work cannot be handed to the broker; the job stays queued in the outbox."""


class DatabaseUnavailable(JobsysError):
    """Raised when the database cannot be connected to (down, wrong URL, unreadable file)."""


class TooManyStreams(JobsysError):
    """Raised when a caller, a web process or the deployment already holds as many
    live event streams as allowed; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after_s": self.retry_after_s}


class ItemsFailed(JobsysError):
    """Raised by ``Job.results()`` when items raised; ``errors`` maps item index to error."""

    def __init__(self, errors: dict[int, dict[str, Any]], total: int) -> None:
        self.errors = errors
        first = min(errors)
        detail = errors[first]
        super().__init__(
            f"{len(errors)} of {total} items failed; item {first}: "
            f"{detail.get('type')}: {detail.get('message')} "
            "(use results(errors='return') to get them in place)"
        )


class StepError(JobsysError):
    """Raised on a worker when a step cannot complete."""


class StepFailed(StepError):
    """Raised when a container exits with a non-zero code."""

    def __init__(self, exit_code: int, message: str | None = None) -> None:
        self.exit_code = exit_code
        super().__init__(message or f"container exited with code {exit_code}")


class StepTimeout(StepError):
    """Raised when a step runs past its timeout; its container has been killed."""


class StepCancelled(StepError):
    """Raised when a step stops because its job was cancelled."""


class ImageError(StepError):
    """Raised when a step's image is missing locally or not on the allow-list."""


class SignatureError(StepError):
    """Raised when a pickled payload is unsigned or its signature does not match."""


class SecretUnavailable(StepError):
    """Raised on a worker when a secret its step names was deleted since the job
    was submitted, or was stored with another ``JOBSYS_SECRETS_KEY``."""


#: Every concrete error class by name, so the client can rebuild what the server raised.
ERRORS_BY_NAME: dict[str, type[JobsysError]] = {
    cls.__name__: cls
    for cls in (
        JobsysError,
        ConfigError,
        SpecError,
        PayloadTooLarge,
        IdempotencyMismatch,
        AuthError,
        Unauthenticated,
        PermissionDenied,
        NotFoundError,
        StateError,
        DispatchError,
        DatabaseUnavailable,
        TooManyStreams,
        ItemsFailed,
        StepError,
        StepFailed,
        StepTimeout,
        StepCancelled,
        ImageError,
        SignatureError,
    )
}
