"""What a program outside the cluster uses: the HTTP ``Client`` and its ``Job``
handle (``http``), and the ``concurrent.futures`` ``Executor`` built on it
(``executor``). They speak only the JSON API, never the database or Redis."""

from jobsys.client.executor import Executor, RemoteError
from jobsys.client.http import Client, Job, UntrustedResult

__all__ = ["Client", "Executor", "Job", "RemoteError", "UntrustedResult"]
