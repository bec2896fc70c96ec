"""The Celery tasks of a function step: one per chunk of items, and the chord callback."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import shared_task
from celery.signals import task_failure

from jobsys import envelope, service
from jobsys.auth import SYSTEM
from jobsys.broker.canvas import GATHER_FUNCTION_STEP, RUN_FUNCTION_CHUNK
from jobsys.context import Context
from jobsys.errors import SignatureError
from jobsys.service.progress import LogRecord, TaskStart
from jobsys.signing import Binding, Purpose
from jobsys.store.models import utcnow
from workers.context import worker_context
from workers.execution import exclusive_run, gives_up
from workers.sandbox.chunks import LoadFailed, run_sandboxed

log = logging.getLogger(__name__)

#: Loaded callables by step id: a worker runs many chunks of one step in a row.
_functions: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()
_MAX_CACHED = 16


def load_function(ctx: Context, job_id: str, step_id: str, ref: Any) -> Callable[[Any], Any]:
    """The step's callable: an import path, or a pickle signed as the function of
    exactly this job's step (checked before a byte is unpickled: a function
    signed for another job, or an item or result blob, is refused).

    ``job_id`` and ``step_id`` come from the database row of the task being
    run, never from the message; ``ref`` is read from that step's own row."""
    if step_id in _functions:
        _functions.move_to_end(step_id)
        return _functions[step_id]
    if isinstance(ref, str):
        module_name, _, attr = ref.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        fn = obj
    else:
        fn = envelope.decode(
            ref,
            ctx.signer,
            Binding(Purpose.FUNCTION, job_id, step_id),
            legacy=ctx.settings.accept_legacy_signatures,
        )
    if not callable(fn):
        # Never the value itself: the message would carry the signed blob.
        raise TypeError(f"the function of step {step_id} is not callable (a {type(fn).__name__})")
    _functions[step_id] = fn
    if len(_functions) > _MAX_CACHED:
        _functions.popitem(last=False)
    return fn


class _LineWriter(io.TextIOBase):
    """A text stream that hands over each complete line as soon as it is written."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def close_lines(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""


@contextlib.contextmanager
def captured_output(
    tag: str, on_line: Callable[[LogRecord], None] | None = None
) -> Iterator[list[LogRecord]]:
    """Collect print() and logging output of user code as log lines tagged with
    ``tag``, handing each to ``on_line`` as it is written (the live view)."""
    records: list[LogRecord] = []
    publishing = threading.local()

    def sink(stream: str) -> _LineWriter:
        def emit(line: str) -> None:
            record = LogRecord(line=f"{tag} {line}", stream=stream, ts=utcnow())
            records.append(record)
            # A warning logged while publishing (Redis down) comes back here:
            # store it, but do not publish it, or it would loop.
            if on_line is not None and not getattr(publishing, "active", False):
                publishing.active = True
                try:
                    on_line(record)
                finally:
                    publishing.active = False

        return _LineWriter(emit)

    out, err = sink("stdout"), sink("stderr")
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield records
    finally:
        root.removeHandler(handler)
        out.close_lines()
        err.close_lines()


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """The step's secrets as environment variables of this process while its chunk
    runs (``JOBSYS_SANDBOX=off``: the sandbox's own environment carries them when on)."""
    if not values:
        yield
        return
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def run_chunk(
    fn: Callable[[Any], Any],
    items: list[Any],
    ctx: Context,
    job_id: str,
    step_id: str,
) -> list[dict[str, Any]]:
    """Each item's outcome in order; an item that raises does not stop the others.

    A pickled item runs only if it is signed as an item of this job's step, and
    each pickled result is signed as a result of it.

    The chunk's soft time limit does: the item running when it passes fails with
    SoftTimeLimitExceeded, and the items after it are recorded as not run, so
    the chunk still reports (and its chord still calls back) before the hard
    limit would kill the process."""
    as_item = Binding(Purpose.ITEMS, job_id, step_id)
    as_result = Binding(Purpose.RESULT, job_id, step_id)
    legacy = ctx.settings.accept_legacy_signatures
    outcomes = []
    for i, item in enumerate(items):
        try:
            value = fn(envelope.decode(item, ctx.signer, as_item, legacy=legacy))
            outcomes.append(envelope.ok(value, ctx.signer, as_result))
        except SoftTimeLimitExceeded as exc:
            outcomes.append(envelope.error(exc))
            skipped = SoftTimeLimitExceeded("not run: the chunk passed its soft time limit")
            outcomes += [envelope.error(skipped)] * (len(items) - i - 1)
            break
        except Exception as exc:
            outcomes.append(envelope.error(exc))
    return outcomes


@task_failure.connect
def _hard_time_limit(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
) -> None:
    """A chunk killed at its hard time limit cannot report: record it here (in the
    worker's main process, where Celery handles the timeout) and end its step."""
    if getattr(sender, "name", None) != RUN_FUNCTION_CHUNK or task_id is None:
        return
    if not isinstance(exception, TimeLimitExceeded):
        return
    ctx = worker_context()
    reason = f"the chunk passed its hard time limit ({exception}) and was killed"
    if service.abandon_task(ctx, task_id, reason):
        step_id = service.step_of_task(ctx, task_id)
        if step_id is not None:
            service.settle_step(ctx, step_id)


@shared_task(name=RUN_FUNCTION_CHUNK, bind=True)
def run_function_chunk(
    self: Any,
    job_id: str,
    step_id: str,
    chunk_index: int,
    start: int,
    items: list[Any],
    sole: bool = False,
) -> dict[str, Any]:
    """One chunk of a function step. ``sole``: the step's only chunk, sent with
    no chord callback, so this task ends its step itself: in the transaction
    that records its outcome, or (a redelivery after that, a chunk that failed
    or gave up) by settling the step from its records afterwards."""
    ctx = worker_context()
    with exclusive_run(self, ctx) as begun:
        if begun is None:
            if sole:
                # Its outcome was recorded by an earlier delivery that died before
                # the step ended, or the job is over: end the step if it is due.
                _settle(ctx, self.request.id)
            return {"chunk": chunk_index, "skipped": True}
        given_up = gives_up(ctx, begun)
        if given_up is not None:
            # Recorded here, and the return still counts in the chord, so the
            # step ends with each of these items failed for that reason.
            service.abandon_task(ctx, self.request.id, given_up)
            if sole:
                service.settle_step(ctx, begun.step_id)
            return {"chunk": chunk_index, "failed": len(items)}
        try:
            return _run_chunk_task(ctx, self.request.id, begun, chunk_index, start, items, sole)
        except Exception as exc:
            # A chunk that raises must still end, or its chord never calls back
            # (celery/celery#4207); its items fail with the reason.
            log.exception("chunk %s failed", self.request.id)
            failure = envelope.error(exc)
            reason = f"the chunk failed: {type(exc).__name__}: {exc}"
            service.abandon_task(ctx, self.request.id, reason, outcome=failure)
            if sole:
                service.settle_step(ctx, begun.step_id)
            return {"chunk": chunk_index, "failed": len(items)}


def _settle(ctx: Context, task_id: str) -> None:
    step_id = service.step_of_task(ctx, task_id)
    if step_id is not None:
        service.settle_step(ctx, step_id)


def _run_chunk_task(
    ctx: Context,
    task_id: str,
    begun: TaskStart,
    chunk_index: int,
    start: int,
    items: list[Any],
    sole: bool = False,
) -> dict[str, Any]:
    job_id, step_id = begun.job_id, begun.step_id
    tag = f"[items {start}-{start + len(items) - 1}]"
    # Fetched by name now, never carried by the message; a deleted one fails the chunk.
    secrets = service.reveal_secrets(
        ctx, SYSTEM, begun.step_spec.get("secrets") or (), project=begun.project
    )
    redact = service.Redactor(secrets.values())

    def live(record: LogRecord) -> None:
        service.publish_logs(ctx, job_id, step_id, [redact.log(record)])

    if ctx.settings.sandbox == "on":
        logs, outcomes, failure = _sandboxed(ctx, begun, items, tag, live, secrets)
    else:
        with captured_output(tag, on_line=live) as logs, environment(secrets):
            try:
                fn = load_function(ctx, job_id, step_id, begun.step_spec["function"])
            except Exception as exc:
                failure = envelope.error(exc)
                outcomes = None
            else:
                outcomes = run_chunk(fn, items, ctx, job_id, step_id)
    if redact:
        logs = [redact.log(r) for r in logs]
    if outcomes is None:
        # The function itself could not be loaded (bad signature, import error):
        # every item fails with that reason and the chunk is marked failed.
        reason = f"{failure['error']['type']}: {failure['error']['message']}"
        service.finish_task(
            ctx,
            task_id,
            ok=False,
            error=reason,
            results=[failure] * len(items),
            failed_items=len(items),
            logs=logs,
            logs_published=True,
            settle=sole,
        )
        return {"chunk": chunk_index, "failed": len(items)}
    failed = sum(1 for o in outcomes if not o["ok"])
    service.finish_task(
        ctx,
        task_id,
        ok=True,
        results=outcomes,
        failed_items=failed,
        logs=logs,
        logs_published=True,
        settle=sole,
    )
    return {"chunk": chunk_index, "failed": failed}


def _sandboxed(
    ctx: Context,
    begun: TaskStart,
    items: list[Any],
    tag: str,
    live: Callable[[LogRecord], None],
    secrets: Mapping[str, str],
) -> tuple[list[LogRecord], list[dict[str, Any]] | None, dict[str, Any]]:
    """The chunk run in the sandbox (``JOBSYS_SANDBOX=on``): its log lines, its
    outcomes (None when the function could not be loaded) and that failure."""
    logs: list[LogRecord] = []

    def emit(stream: str, line: str) -> None:
        record = LogRecord(line=f"{tag} {line}", stream=stream, ts=utcnow())
        logs.append(record)
        live(record)

    function = begun.step_spec["function"]
    try:
        outcomes = run_sandboxed(
            ctx,
            begun.job_id,
            begun.step_id,
            function,
            items,
            emit,
            env=secrets,
            memory_limit=begun.step_spec.get("memory_limit"),
            network=bool(begun.step_spec.get("network")),
        )
    except LoadFailed as exc:
        return logs, None, exc.failure
    except SignatureError as exc:
        return logs, None, envelope.error(exc)
    return logs, outcomes, {}


@shared_task(name=GATHER_FUNCTION_STEP)
def gather_function_step(job_id: str, step_id: str) -> str:
    return service.gather_function_step(worker_context(), step_id).value
