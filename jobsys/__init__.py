"""jobsys: a distributed job system on Celery and Redis.

The public API: the HTTP ``Client``, its ``Job`` handle and the
``UntrustedResult`` it gives for results of code someone else supplied, the
``concurrent.futures`` ``Executor``, the spec values, and the error tree.
"""

from jobsys.client.executor import Executor, RemoteError
from jobsys.client.http import Client, Job, UntrustedResult
from jobsys.errors import (
    AuthError,
    ConfigError,
    DispatchError,
    ItemsFailed,
    JobsysError,
    NotFoundError,
    PermissionDenied,
    SignatureError,
    SpecError,
    StateError,
    StepError,
    StepFailed,
    StepTimeout,
    Unauthenticated,
)
from jobsys.specs import DockerStep, FunctionStep, JobSpec
from jobsys.step_secrets import SecretNotGiven, secret

__all__ = [
    "AuthError",
    "Client",
    "ConfigError",
    "DispatchError",
    "DockerStep",
    "Executor",
    "FunctionStep",
    "ItemsFailed",
    "Job",
    "JobSpec",
    "JobsysError",
    "NotFoundError",
    "PermissionDenied",
    "RemoteError",
    "SecretNotGiven",
    "SignatureError",
    "SpecError",
    "StateError",
    "StepError",
    "StepFailed",
    "StepTimeout",
    "Unauthenticated",
    "UntrustedResult",
    "secret",
]
