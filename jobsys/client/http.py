"""The Python client: the JSON API over HTTP, with Python values in and out.

    from jobsys import Client
    c = Client("http://127.0.0.1:5000", token="jst_...")
    job = c.map(lambda x: x * x, range(1000)).wait(timeout=60)
    job.results()  # [0, 1, 4, ...]

Functions and values that JSON cannot carry travel as cloudpickle; the server
signs them after checking your token may submit code. Results come back
unpickled only from code you supplied yourself (or with ``trust=True``): any
other pickled result is an ``UntrustedResult``, because unpickling runs code.
Error answers come back as the matching ``JobsysError`` subclass with the
server's message.
"""

from __future__ import annotations

import gzip
import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import cloudpickle
import httpx

from jobsys.config import client_env, client_project
from jobsys.envelope import PICKLE_KEY, is_pickled, to_wire
from jobsys.errors import (
    ERRORS_BY_NAME,
    DispatchError,
    ItemsFailed,
    JobsysError,
    TooManyStreams,
)
from jobsys.fastjson import dumps, loads
from jobsys.signing import b64decode, b64encode
from jobsys.states import FINISHED, JobStatus


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        project: str | None = None,
    ) -> None:
        """``transport`` (an httpx transport, e.g. ``httpx.WSGITransport(app=...)``)
        talks to an app in this process instead of over the network. ``project``
        (default ``JOBSYS_PROJECT``) is where new jobs and schedules go and where
        templates and schedules are looked up by name; lists show only it. Without
        one the server picks ``default``, or your only project."""
        default_url, default_token = client_env()
        self.url = (url or default_url).rstrip("/")
        self.token = token or default_token
        self.project = project or client_project()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DispatchError(f"cannot reach the jobsys server at {self.url}: {exc}") from exc
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        raise _error_from(response)

    # -- submitting ---------------------------------------------------------

    def _in_project(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the client's project, unless it names one itself."""
        if self.project is None or "project" in data:
            return data
        return {**data, "project": self.project}

    def _project_params(self, **params: Any) -> dict[str, Any]:
        return self._in_project(params)

    def submit_spec(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a job spec. With ``idempotency_key`` (a new UUID per job, say), sending
        the same spec again within 24 h, after a timeout for instance, returns the job
        the first sending made instead of starting a second one."""
        request = _body(self._in_project(spec))
        if idempotency_key is not None:
            request["headers"]["Idempotency-Key"] = idempotency_key
        return Job(self, self.request("POST", "/api/jobs", **request))

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        chunk_size: int | None = None,
        tolerate_failures: bool = False,
        name: str | None = None,
        tags: Sequence[str] = (),
        priority: int = 5,
        soft_time_limit_s: float | None = None,
        time_limit_s: float | None = None,
        secrets: Sequence[str] = (),
        memory_limit: str | None = None,
        network: bool = False,
    ) -> Job:
        """Run ``fn`` over every item on the workers, as one function step;
        the time limits apply to each chunk, ``priority`` (0-9) to the job.
        ``secrets``: names of secrets ``fn`` reads with ``jobsys.secret(name)``
        (or ``os.environ``); an admin sets them, and their roles must include yours.
        ``memory_limit`` (``"2g"``) and ``network`` are each chunk's sandbox's."""
        step: dict[str, Any] = {
            "kind": "function",
            "function": {PICKLE_KEY: b64encode(cloudpickle.dumps(fn))},
            "tolerate_failures": tolerate_failures,
        }
        for key, value in (
            ("chunk_size", chunk_size),
            ("soft_time_limit_s", soft_time_limit_s),
            ("time_limit_s", time_limit_s),
            ("memory_limit", memory_limit),
            ("network", network or None),
        ):
            if value is not None:
                step[key] = value
        if secrets:
            step["secrets"] = list(secrets)
        spec = self._in_project(
            {"name": name or _name_of(fn), "tags": list(tags), "priority": priority}
        )
        # The items are encoded and compressed as they are sent, never held as one document.
        body = _gzipped(_spec_with_items(spec, step, items))
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return Job(self, self.request("POST", "/api/jobs", content=body, headers=headers))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Run one call ``fn(*args, **kwargs)`` on a worker as a job; its one result
        is ``job.wait().results()[0]``. (``concurrent.futures`` users: see ``Executor``.)"""
        step = {
            "kind": "function",
            "function": {PICKLE_KEY: b64encode(cloudpickle.dumps(_Call(fn)))},
            "items": [to_wire([list(args), kwargs])],
        }
        return self.submit_spec({"name": f"call {_name_of(fn)[4:]}"[:200], "steps": [step]})

    def run_docker(
        self,
        image: str,
        command: Sequence[str] | str,
        *,
        env: Mapping[str, str | Mapping[str, str]] | None = None,
        timeout_s: float = 3600,
        retries: int = 0,
        name: str | None = None,
        tags: Sequence[str] = (),
        priority: int = 5,
        not_before: str | datetime | None = None,
        delay_s: float | None = None,
    ) -> Job:
        """Run ``command`` in ``image`` as a one-step job; an ``env`` value may be
        ``{"secret": NAME}``, which the worker fills in with that secret's value.
        ``not_before`` (a time with its zone) or ``delay_s`` holds it until then."""
        step = {
            "kind": "docker",
            "image": image,
            "command": command if isinstance(command, str) else list(command),
            "env": dict(env or {}),
            "timeout_s": timeout_s,
            "retries": retries,
        }
        spec = {"name": name or image, "steps": [step], "tags": list(tags), "priority": priority}
        if not_before is not None:
            spec["not_before"] = (
                not_before.isoformat() if isinstance(not_before, datetime) else not_before
            )
        if delay_s is not None:
            spec["delay_s"] = delay_s
        return self.submit_spec(spec)

    # -- reading ------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return Job(self, self.request("GET", f"/api/jobs/{job_id}"))

    def jobs(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        page: int = 1,
        per_page: int = 50,
        **filters: Any,
    ) -> list[Job]:
        """A page of jobs (``limit`` is ``per_page`` for the first page); filters: owner,
        template, tag, q (id or name prefix), since, until (ISO times or datetimes),
        sort (-created, created, -finished, name)."""
        params: dict[str, Any] = self._project_params(page=page, per_page=limit or per_page)
        if status:
            params["status"] = status
        for key, value in filters.items():
            params[key] = value.isoformat() if hasattr(value, "isoformat") else value
        data = self.request("GET", "/api/jobs", params=params)
        return [Job(self, j) for j in data["jobs"]]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; StateError if it already ended."""
        return Job(self, self.request("POST", f"/api/jobs/{job_id}/cancel"))

    def rerun(self, job_id: str) -> Job:
        """A new job with the same spec (``rerun_of`` links back)."""
        return Job(self, self.request("POST", f"/api/jobs/{job_id}/rerun"))

    def resume(self, job_id: str) -> Job:
        """A new job that continues a failed or cancelled one where it stopped."""
        return Job(self, self.request("POST", f"/api/jobs/{job_id}/resume"))

    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/stats"))

    def dashboard(self) -> dict[str, Any]:
        """Counts, the last 24 h per hour, queue load, live workers, recent failures."""
        return dict(self.request("GET", "/api/dashboard"))

    def workers(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/workers")["workers"])

    # -- the catalog --------------------------------------------------------

    def start(
        self, template: str, /, *, idempotency_key: str | None = None, **variables: Any
    ) -> Job:
        """Start a catalog template: ``c.start("echo", message="hi", times=2)``; an
        ``idempotency_key`` makes a repeat within 24 h return the first start's job."""
        body = {"variables": variables}
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        path = f"/api/catalog/{template}/start"
        params = self._project_params()
        return Job(self, self.request("POST", path, json=body, headers=headers, params=params))

    def catalog(self) -> dict[str, Any]:
        """``{"templates": [...], "broken": [{"name", "source", "error"}]}``."""
        return dict(self.request("GET", "/api/catalog", params=self._project_params()))

    def template(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/catalog/{name}", params=self._project_params()))

    def render(self, template: str, **variables: Any) -> dict[str, Any]:
        """The job spec a start would submit, checked, without running it."""
        body = {"variables": variables}
        path = f"/api/catalog/{template}/render"
        return dict(self.request("POST", path, json=body, params=self._project_params())["spec"])

    def reload_catalog(self) -> dict[str, Any]:
        """(admin) Read the server's catalog folder again."""
        return dict(self.request("POST", "/api/catalog/reload"))

    # -- schedules (by id or name) --------------------------------------------

    def create_schedule(
        self,
        name: str,
        spec: dict[str, Any],
        *,
        cron: str | None = None,
        interval_s: int | None = None,
        timezone: str = "UTC",
        **options: Any,
    ) -> dict[str, Any]:
        """Schedule ``spec`` on a cron line or every ``interval_s`` seconds; options are
        ``description``, ``catch_up`` (skip/once/all), ``catch_up_window_s``,
        ``overlap`` (skip/allow) and ``enabled``."""
        body = self._in_project({"name": name, "spec": spec, "timezone": timezone, **options})
        if cron is not None:
            body["cron"] = cron
        if interval_s is not None:
            body["interval_s"] = interval_s
        return dict(self.request("POST", "/api/schedules", json=body))

    def schedules(self) -> list[dict[str, Any]]:
        return list(
            self.request("GET", "/api/schedules", params=self._project_params())["schedules"]
        )

    def schedule(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/schedules/{ref}", params=self._project_params()))

    def update_schedule(self, ref: str, **changes: Any) -> dict[str, Any]:
        """Change some fields, e.g. ``update_schedule("nightly", enabled=False)``."""
        path = f"/api/schedules/{ref}"
        return dict(self.request("PATCH", path, json=changes, params=self._project_params()))

    def delete_schedule(self, ref: str) -> None:
        self.request("DELETE", f"/api/schedules/{ref}", params=self._project_params())

    def schedule_runs(self, ref: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The schedule's runs, newest first."""
        params = self._project_params(limit=limit)
        data = self.request("GET", f"/api/schedules/{ref}/runs", params=params)
        return list(data["runs"])

    def run_schedule_now(self, ref: str) -> Job:
        """Start the schedule's job now; its next tick does not move."""
        path = f"/api/schedules/{ref}/run-now"
        return Job(self, self.request("POST", path, params=self._project_params()))

    def projects(self) -> list[dict[str, Any]]:
        """The projects you belong to (every one for a global role)."""
        return list(self.request("GET", "/api/projects")["projects"])


class Job:
    """A handle on one job; ``refresh()`` re-reads it, other properties use the last read."""

    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        self.client = client
        #: The first page of outcomes an answer about the job's end carried
        #: (``results=N``); ``outcomes`` starts from it instead of asking again.
        self._first_page: dict[str, Any] | None = None
        self.data = data
        self.id: str = data["id"]

    @property
    def data(self) -> dict[str, Any]:
        """The job as last read."""
        return self._data

    @data.setter
    def data(self, data: dict[str, Any]) -> None:
        page = data.pop("results", None)
        self._first_page = page if isinstance(page, dict) and page.get("offset") == 0 else None
        self._data = data

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.data.get('name')!r} {self.status}>"

    def refresh(self) -> Job:
        self.data = self.client.request("GET", f"/api/jobs/{self.id}")
        return self

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def progress(self) -> tuple[int, int]:
        p = self.data.get("progress") or {}
        return int(p.get("done", 0)), int(p.get("total", 0))

    @property
    def error(self) -> str | None:
        return self.data.get("error")

    def wait(self, timeout: float | None = None, *, poll: float = 0.1) -> Job:
        """Block until the job ends; TimeoutError after ``timeout`` seconds.

        Each request is a long-poll (``?wait=``, at most ``WAIT_ROUND_S``) that the
        server answers the moment the job ends: no sleeping in between. ``poll``
        is only for a server that predates ``wait`` (or refuses it, 429): then
        this sleeps ``poll`` seconds, growing to 1, between plain reads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.refresh()
                if JobStatus(self.status) in FINISHED:
                    return self
                raise TimeoutError(f"job {self.id} still {self.status} after {timeout} s")
            held = self._wait_round(WAIT_ROUND_S if left is None else min(WAIT_ROUND_S, left))
            if JobStatus(self.status) in FINISHED:
                return self
            if not held:
                until_deadline = math.inf if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(delay, until_deadline)))
                delay = min(1.0, delay * 1.5)

    def _wait_round(self, seconds: float) -> bool:
        """Re-read the job, letting the server hold the answer up to ``seconds``
        until it ends; whether it did hold it (False: an old server, or 429)."""
        base = self.client._http.timeout
        # The server answers within ``seconds``: reading the answer may take that long.
        timeout = httpx.Timeout(
            connect=base.connect, read=seconds + 30, write=base.write, pool=base.pool
        )
        try:
            # An ended job's first outcomes come along: results() then asks for no page.
            params = {"wait": _seconds(seconds), "results": INLINE_RESULTS}
            response = self.client._http.get(f"/api/jobs/{self.id}", params=params, timeout=timeout)
        except httpx.TransportError as exc:
            raise DispatchError(
                f"cannot reach the jobsys server at {self.client.url}: {exc}"
            ) from exc
        if response.status_code == 429:
            self.refresh()
            return False
        if not response.is_success:
            raise _error_from(response)
        self.data = loads(response.content)
        return WAIT_HEADER in response.headers

    def results(
        self, errors: str = "raise", *, trust: bool = False, timeout: float | None = None
    ) -> list[Any]:
        """Each item's value in item order, once the job has ended (waited for
        up to ``timeout`` seconds, TimeoutError after: see ``outcomes``).

        ``errors="raise"`` raises ItemsFailed if any item failed;
        ``errors="return"`` puts each failed item's error dict in its place.
        Pickled values are unpickled only when you supplied the job's code, or with
        ``trust=True``; otherwise each is an ``UntrustedResult`` (see ``outcomes``).
        """
        if errors not in ("raise", "return"):
            raise ValueError("errors must be 'raise' or 'return'")
        values: list[Any] = []
        failed: dict[int, dict[str, Any]] = {}
        for i, (ok, value) in enumerate(self.outcomes(trust=trust, timeout=timeout)):
            if not ok:
                failed[i] = value
            values.append(value)
        if failed and errors == "raise":
            raise ItemsFailed(failed, total=len(values))
        return values

    def outcomes(
        self, *, trust: bool = False, timeout: float | None = None
    ) -> Iterator[tuple[bool, Any]]:
        """Each item as ``(True, value)`` or ``(False, {"type", "message", "traceback"})``,
        read page by page (following ``next_offset``) so a million results never sit
        in memory at once.

        A job not known to have ended is waited for first, up to ``timeout``
        seconds (None: for as long as it takes; TimeoutError after), by the
        results request itself (``?wait=``): the end and the first page come in
        one answer, with no separate ``wait()`` request before it.

        Unpickling runs code. A value that came back pickled is unpickled only when
        the server says you supplied the job's code (its ``code_owner`` is you: reruns
        and resumes by others keep the original owner), or when you pass
        ``trust=True``. Any other pickled value is an ``UntrustedResult`` holding the
        worker's repr and the raw bytes; its ``load()`` unpickles it on request."""
        # The next page is fetched while this one is decoded and consumed: the
        # server's query and the transfer overlap the caller's work, and at most
        # two pages are held at once.
        if JobStatus(self.status) in FINISHED:
            first = self._first_page
        else:
            first = self._wait_for_first_page(timeout)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobsys-results") as pool:
            pending = pool.submit(self._results_page, 0) if first is None else None
            while first is not None or pending is not None:
                data = first if first is not None else pending.result()  # type: ignore[union-attr]
                first = None
                offset = data.get("next_offset")
                pending = pool.submit(self._results_page, offset) if offset is not None else None
                unpickle = trust or data.get("trusted") is True
                owner = data.get("code_owner")
                for o in data["results"]:
                    if o["ok"]:
                        yield True, _result_value(o["value"], unpickle, self.id, owner)
                    else:
                        yield False, o["error"]

    def _wait_for_first_page(self, timeout: float | None) -> dict[str, Any] | None:
        """The first page of results once the job has ended, each request a
        long-poll of at most ``WAIT_ROUND_S``; None when it must be read by a
        plain request after ``wait()`` (a server without ``?wait=`` on results,
        or one that refused the wait with a 429)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.wait(timeout=0)  # one last look: raises TimeoutError if still open
                return None
            seconds = WAIT_ROUND_S if left is None else min(WAIT_ROUND_S, left)
            base = self.client._http.timeout
            read_timeout = httpx.Timeout(
                connect=base.connect, read=seconds + 30, write=base.write, pool=base.pool
            )
            params = {"offset": 0, "limit": RESULTS_PAGE, "wait": _seconds(seconds)}
            try:
                response = self.client._http.get(
                    f"/api/jobs/{self.id}/results", params=params, timeout=read_timeout
                )
            except httpx.TransportError as exc:
                raise DispatchError(
                    f"cannot reach the jobsys server at {self.client.url}: {exc}"
                ) from exc
            if response.status_code in (409, 429):
                # 429: no slot to wait in. 409: the job ended without results, or
                # an old server that ignored ``wait`` on an open job: wait() tells.
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self.wait(left)
                return None
            if not response.is_success:
                raise _error_from(response)
            data = loads(response.content)
            if data.get("ended") is False:
                self.data = data["job"]
                continue
            return data

    def _results_page(self, offset: int) -> dict[str, Any]:
        """One page of outcomes, decoded with orjson (a page of 20,000 is most of
        a big map's download time in the stdlib decoder)."""
        params = {"offset": offset, "limit": RESULTS_PAGE}
        path = f"/api/jobs/{self.id}/results"
        try:
            response = self.client._http.request("GET", path, params=params)
        except httpx.TransportError as exc:
            raise DispatchError(
                f"cannot reach the jobsys server at {self.client.url}: {exc}"
            ) from exc
        if not response.is_success:
            raise _error_from(response)
        return loads(response.content)

    def iter_results(self, *, trust: bool = False) -> Iterator[Any]:
        """Each item's value in item order, one page at a time; ItemsFailed at the
        first failed item (use ``outcomes()`` to see every item's error). ``trust``
        as for ``outcomes``."""
        for i, (ok, value) in enumerate(self.outcomes(trust=trust)):
            if not ok:
                raise ItemsFailed({i: value}, total=i + 1)
            yield value

    def cancel(self) -> Job:
        self.data = self.client.cancel(self.id).data
        return self

    def rerun(self) -> Job:
        return self.client.rerun(self.id)

    def resume(self) -> Job:
        return self.client.resume(self.id)

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.client.request("GET", f"/api/jobs/{self.id}/tasks")["tasks"])

    def logs(self, tail: int | None = None, *, follow: bool = False) -> Any:
        """Stored log lines as a list; with ``follow=True`` an iterator that
        yields each line as it arrives and ends when the job does (resumed
        across reconnects like ``events()``)."""
        if follow:
            return (e["data"] for e in self.events() if e["event"] == "log")
        params = {"tail": tail} if tail else {}
        return list(self.client.request("GET", f"/api/jobs/{self.id}/logs", params=params)["logs"])

    def events(self, after: str | None = None) -> Iterator[dict[str, Any]]:
        """The job's server-sent events (``status``, ``log``) until it ends.

        The server ends each stream after ``JOBSYS_STREAM_MAX_S`` (saying
        ``reconnect``); that, a dropped connection and a busy server (429 on a
        reconnect) are resumed after the last event seen, as EventSource does,
        so nothing is missed or repeated. Five failures in a row raise
        DispatchError; a 429 on the first connection is raised as TooManyStreams.
        """
        last = after
        failures = 0
        connected = False
        while True:
            pause, lifetime_up = STREAM_RETRY_S, False
            try:
                for event in self._stream(last):
                    connected, failures = True, 0
                    if event["event"] == "end":
                        return
                    if event["event"] == "reconnect":
                        lifetime_up = True
                        break
                    last = event["id"] or last
                    yield event
                # Else closed with neither "end" nor "reconnect": cut on the way.
            except httpx.TransportError:
                pass
            except TooManyStreams as exc:
                if not connected:
                    raise
                pause = min(float(getattr(exc, "retry_after_s", 10)), 30.0)
            if lifetime_up:
                continue  # at once, after ``last``
            failures += 1
            if failures >= 5:
                raise DispatchError(f"lost the event stream of job {self.id} five times in a row")
            time.sleep(pause)

    def _stream(self, after: str | None) -> Iterator[dict[str, Any]]:
        headers = {"Last-Event-ID": after} if after else {}
        timeout = httpx.Timeout(30.0, read=60.0)  # the server sends a heartbeat every 5 s
        path = f"/api/jobs/{self.id}/events"
        with self.client._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if not response.is_success:
                response.read()
                exc = _error_from(response)
                if response.status_code == 429:
                    wait = response.headers.get("Retry-After", "")
                    exc.retry_after_s = float(wait) if wait.isdigit() else 10.0  # type: ignore[attr-defined]
                raise exc
            event: dict[str, Any] = {"id": None, "event": "message", "data": ""}
            for line in response.iter_lines():
                if not line:
                    if event["data"]:
                        yield {**event, "data": json.loads(event["data"])}
                    event = {"id": None, "event": "message", "data": ""}
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        event["data"] += value
                    elif name in ("id", "event"):
                        event[name] = value


#: The longest one ``Job.wait`` request asks the server to hold its answer (the
#: server's maximum is 60 s; less keeps clear of proxies' idle timeouts).
WAIT_ROUND_S = 30.0
#: The header of an answer the server held for ``?wait=`` (``webui.api.WAIT_HEADER``).
WAIT_HEADER = "Jobsys-Wait"

#: Seconds ``Job.events()`` waits before it reconnects after a dropped stream.
STREAM_RETRY_S = 0.5


#: Results per request when reading them back (the server's maximum page).
RESULTS_PAGE = 20_000
#: Outcomes an answer about a job's end brings along (the server's maximum,
#: ``jobsys.service.jobs.MAX_INLINE_RESULTS``): all of a small job's.
INLINE_RESULTS = 100
#: JSON bodies larger than this are sent gzip-compressed.
GZIP_ABOVE = 64 * 1024


class UntrustedResult:
    """A pickled result this client would not unpickle: someone else supplied the
    code that made it, and unpickling runs whatever its ``__reduce__`` says.

    ``repr`` is what the worker's ``repr()`` of the value said (made on the worker,
    never here), ``data`` the raw pickle; ``load()`` unpickles it when you decide
    to trust it, as ``trust=True`` on ``Job.results`` would have."""

    __slots__ = ("code_owner", "data", "job_id", "repr")

    def __init__(self, data: bytes, repr: str | None, job_id: str, code_owner: str | None) -> None:
        self.data = data
        self.repr = repr
        self.job_id = job_id
        self.code_owner = code_owner

    def load(self) -> Any:
        """The value itself. Unpickling runs code: do this only for code you trust."""
        return cloudpickle.loads(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UntrustedResult) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        shown = self.repr if self.repr is not None else f"<{len(self.data):,} bytes of pickle>"
        return f"<UntrustedResult {shown} from code by {self.code_owner or 'someone else'}>"


def _result_value(obj: Any, unpickle: bool, job_id: str, code_owner: str | None) -> Any:
    """One result as the API sent it: JSON as is; a pickle unpickled only if trusted."""
    if not is_pickled(obj):
        return obj
    data = b64decode(obj[PICKLE_KEY])
    if unpickle:
        return cloudpickle.loads(data)  # unpickling runs code: trusted by the rule above
    shown = obj.get("repr")
    return UntrustedResult(data, shown if isinstance(shown, str) else None, job_id, code_owner)


def _body(data: Any) -> dict[str, Any]:
    """``request`` keyword arguments sending ``data`` as JSON, compressed when large."""
    raw = json.dumps(data).encode()
    if len(raw) <= GZIP_ABOVE:
        return {"content": raw, "headers": {"Content-Type": "application/json"}}
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return {"content": gzip.compress(raw, compresslevel=5), "headers": headers}


def _spec_with_items(
    spec: dict[str, Any], step: dict[str, Any], items: Iterable[Any]
) -> Iterator[bytes]:
    """The JSON of ``spec`` with ``step`` as its one step and ``items`` as that
    step's item list, in pieces of a thousand items (each encoded by orjson)."""
    yield f'{json.dumps(spec)[:-1]}, "steps": [{json.dumps(step)[:-1]}, "items": ['.encode()
    batch: list[bytes] = []
    sep = b""
    for item in items:
        batch.append(dumps(to_wire(item)))
        if len(batch) == 1000:
            yield sep + b",".join(batch)
            batch, sep = [], b","
    if batch:
        yield sep + b",".join(batch)
    yield b"]}]}"


def _gzipped(pieces: Iterable[bytes]) -> Iterator[bytes]:
    # Level 1: the upload is a stream the server inflates as it reads; level 5
    # took longer to compress than the items took to send on a local network.
    packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for piece in pieces:
        out = packer.compress(piece)
        if out:
            yield out
    yield packer.flush()


class _Call:
    """``fn`` taking its arguments as the one item ``[args, kwargs]`` of a map."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, packed: Sequence[Any]) -> Any:
        args, kwargs = packed
        return self.fn(*args, **kwargs)


def _seconds(value: float) -> str:
    """Seconds for ``wait`` or ``timeout_s``: never 0, which the server refuses."""
    return f"{max(0.001, value):.3f}"


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "function"
    return f"map {name}"[:200]


def _error_from(response: httpx.Response) -> JobsysError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    cls = ERRORS_BY_NAME.get(str(body.get("error")), JobsysError)
    message = body.get("message") or f"HTTP {response.status_code}: {response.text[:200]}"
    # Rebuild without the subclass's own __init__: the server already wrote the message.
    exc = cls.__new__(cls)
    JobsysError.__init__(exc, message)
    for key in ("fields", "right"):
        if key in body:
            setattr(exc, key, body[key])
    exc.status_code = response.status_code  # type: ignore[attr-defined]
    return exc
