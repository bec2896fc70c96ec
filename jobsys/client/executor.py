"""``jobsys.Executor``: the ``concurrent.futures`` interface over jobsys, so code
written for ``ProcessPoolExecutor`` (or Dask's client) moves over by changing
the line that makes the executor:

    with jobsys.Executor("http://127.0.0.1:5000") as ex:
        squares = list(ex.map(square, range(1000)))   # one job, chunked over workers
        total = ex.submit(sum, [1, 2, 3]).result()     # one call as a job

``map`` sends every item as one function step (chunked by the server) rather
than one job per item, and yields results in order, raising an item's error
when the iteration reaches it, as the standard executors do. A failed item
raises ``RemoteError`` carrying the remote type name, message and traceback.

Every open future is followed by one background thread, with one request at
a time: ``POST /api/jobs/wait`` over all their jobs, which the server answers
as soon as one of them ends. A future submitted while that request is out
joins the next one, which starts when a followed job ends or at the latest
``poll_s`` seconds later (the length of each wait).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import Executor as _Executor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

from jobsys.client.http import INLINE_RESULTS, Client, Job
from jobsys.errors import DispatchError, JobsysError, NotFoundError, TooManyStreams
from jobsys.states import JobStatus

#: The most jobs one wait request may name (the server's limit); more are
#: followed in turns.
WAIT_BATCH = 1_000
#: Seconds the follower pauses after the server could not be reached or was busy (429).
RETRY_S = 1.0


class RemoteError(JobsysError):
    """An exception raised by your function on a worker."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.type = str(error.get("type") or "Exception")
        self.remote_traceback = str(error.get("traceback") or "")
        super().__init__(f"{self.type}: {error.get('message', '')}")

    def __str__(self) -> str:
        if self.remote_traceback:
            return f"{self.message}\n\nRemote traceback:\n{self.remote_traceback}"
        return self.message


class Executor(_Executor):
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        client: Client | None = None,
        chunk_size: int | None = None,
        poll_s: float = 1.0,
        trust: bool = False,
    ) -> None:
        """``url`` and ``token`` default to ``JOBSYS_URL`` and ``JOBSYS_TOKEN``;
        ``chunk_size`` is how many items of a ``map`` one worker task takes;
        ``poll_s`` is how long each of the follower's waits lasts at most (so
        how late a future submitted during one may join; a future whose job
        ends is settled at once), and the pause between reads on a server that
        predates ``POST /api/jobs/wait``.

        Results come back unpickled when the server says you supplied the code
        (always so for jobs this executor submitted under your own name); any other
        pickled result is a ``jobsys.UntrustedResult`` unless ``trust=True``."""
        self._client = client or Client(url, token)
        self._own_client = client is None
        self._chunk_size = chunk_size
        self._poll_s = poll_s
        self._trust = trust
        self._futures: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._wake = threading.Event()
        self._turn = 0  # which window of the open futures the next wait names
        self._legacy = False  # the server has no POST /api/jobs/wait
        self._watcher = threading.Thread(target=self._watch, name="jobsys-executor", daemon=True)
        self._watcher.start()

    # -- the Executor interface ------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            job = self._client.submit(fn, *args, **kwargs)
            future: Future[Any] = Future()
            future.set_running_or_notify_cancel()  # accepted by the server: it runs
            self._futures[job.id] = future
        self._wake.set()
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """One job over all items; ``chunksize`` > 1 sets the items per worker task
        (else the executor's ``chunk_size``, else the server's default)."""
        if self._closed:
            raise RuntimeError("cannot map after shutdown")
        if len(iterables) == 1:
            items, call = list(iterables[0]), fn
        else:
            items, call = [list(args) for args in zip(*iterables, strict=False)], _Star(fn)
        if not items:
            return iter(())
        size = chunksize if chunksize > 1 else self._chunk_size
        job = self._client.map(call, items, chunk_size=size, tolerate_failures=True)
        return self._results(job, time.monotonic() + timeout if timeout is not None else None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            pending = dict(self._futures)
        if cancel_futures:
            for job_id, future in pending.items():
                # Settled first: the watcher may see the job cancelled before we return.
                self._settle(future, False, CancelledError(f"job {job_id} was cancelled"))
                with contextlib.suppress(JobsysError):  # it ended meanwhile
                    self._client.cancel(job_id)
        self._wake.set()
        if wait:
            self._watcher.join()
            if self._own_client:
                self._client.close()

    # -- behind the scenes -------------------------------------------------------

    def _results(self, job: Job, deadline: float | None) -> Iterator[Any]:
        try:
            # The results request waits for the end itself: no wait() before it.
            outcomes = self._outcomes(job, deadline)
        except TimeoutError as exc:
            raise FuturesTimeout(f"job {job.id} still {job.status}") from exc
        for ok, value in outcomes:
            if not ok:
                raise value
            yield value

    def _outcomes(self, job: Job, deadline: float | None = None) -> list[tuple[bool, Any]]:
        """Each item as (ok, value or exception), once the job has ended (by
        ``deadline``, else TimeoutError); a job that ended without item results
        (cancelled, or its step failed) fails every item with its reason."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            found = list(job.outcomes(trust=self._trust, timeout=timeout))
        except JobsysError as exc:
            if not JobStatus(job.status).finished:
                with contextlib.suppress(JobsysError):  # the status for the message only
                    job.refresh()
            return [(False, JobsysError(f"job {job.id} {job.status}: {job.error or exc.message}"))]
        return [(ok, value if ok else RemoteError(value)) for ok, value in found]

    def _watch(self) -> None:
        """The one follower: waits on every open future's job until shutdown."""
        while True:
            self._wake.clear()  # before looking: a submit after this wakes the wait below
            with self._lock:
                self._futures = {i: f for i, f in self._futures.items() if not f.done()}
                pending = list(self._futures)
                closed = self._closed
            if not pending:
                if closed:
                    return
                self._wake.wait()
                continue
            if self._legacy:
                for job_id in pending:
                    self._check(job_id)
                self._wake.wait(self._poll_s)
                continue
            self._follow(self._window(pending))

    def _window(self, pending: list[str]) -> list[str]:
        """The open jobs the next wait names: all of them, or in turns of WAIT_BATCH."""
        if len(pending) <= WAIT_BATCH:
            return pending
        start = (self._turn * WAIT_BATCH) % len(pending)
        self._turn += 1
        return (pending[start:] + pending[:start])[:WAIT_BATCH]

    def _follow(self, job_ids: list[str]) -> None:
        """One wait on ``job_ids``; settles the futures of those that ended."""
        # Each ended job comes with its first outcomes: a one-call future is settled
        # from this answer, without a results request of its own.
        body = {
            "ids": job_ids,
            "timeout_s": min(60.0, max(0.001, self._poll_s)),
            "results": INLINE_RESULTS,
        }
        try:
            waited = self._client.request(
                "POST", "/api/jobs/wait", json=body, timeout=self._poll_s + 30
            )
        except (DispatchError, TooManyStreams):
            self._wake.wait(RETRY_S)  # the jobs go on; so does the follower, later
            return
        except JobsysError as exc:
            if getattr(exc, "status_code", None) == 405:  # a server without the route
                self._legacy = True
                return
            for job_id in job_ids:  # e.g. the token was revoked: as each read would fail
                self._settle_id(job_id, False, exc)
            return
        for data in waited["ended"]:
            self._settle_ended(Job(self._client, data))
        for job_id in waited["missing"]:
            self._settle_id(job_id, False, NotFoundError(f"no job with id {job_id!r}"))

    def _check(self, job_id: str) -> None:
        """One plain read of the job, for a server without ``POST /api/jobs/wait``."""
        try:
            job = self._client.job(job_id)
        except JobsysError as exc:
            self._settle_id(job_id, False, exc)
            return
        if JobStatus(job.status).finished:
            self._settle_ended(job)

    def _settle_ended(self, job: Job) -> None:
        if JobStatus(job.status) is JobStatus.CANCELLED:
            self._settle_id(job.id, False, CancelledError(f"job {job.id} was cancelled"))
            return
        try:
            ok, value = self._outcomes(job)[0]
        except JobsysError as exc:
            ok, value = False, exc
        self._settle_id(job.id, ok, value)

    def _settle_id(self, job_id: str, ok: bool, value: Any) -> None:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            self._settle(future, ok, value)

    def _settle(self, future: Future[Any], ok: bool, value: Any) -> None:
        """Give ``future`` its outcome unless another thread already did."""
        with self._lock:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class _Star:
    """``fn(*item)``, for ``map`` over several iterables."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, args: list[Any]) -> Any:
        return self.fn(*args)
