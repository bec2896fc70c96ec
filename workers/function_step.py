"""The Celery tasks of a function step: one per chunk of items, and the chord callback."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from celery import shared_task

from jobsys import envelope, service
from jobsys.canvas import GATHER_FUNCTION_STEP, RUN_FUNCTION_CHUNK
from jobsys.context import Context
from jobsys.service.progress import LogRecord
from workers.context import worker_context

#: Loaded callables by step id: a worker runs many chunks of one step in a row.
_functions: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()
_MAX_CACHED = 16


def load_function(ctx: Context, step_id: str, ref: Any) -> Callable[[Any], Any]:
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
        fn = envelope.decode(ref, ctx.signer)  # verifies the signature before unpickling
    if not callable(fn):
        raise TypeError(f"{ref!r} is not callable")
    _functions[step_id] = fn
    if len(_functions) > _MAX_CACHED:
        _functions.popitem(last=False)
    return fn


@contextlib.contextmanager
def captured_output(tag: str) -> Iterator[list[LogRecord]]:
    """Collect print() and logging output of user code as log lines tagged with ``tag``."""
    records: list[LogRecord] = []
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield records
    finally:
        root.removeHandler(handler)
        for stream, buf in (("stdout", out), ("stderr", err)):
            records.extend(
                LogRecord(line=f"{tag} {line}", stream=stream)
                for line in buf.getvalue().splitlines()
            )


def run_chunk(fn: Callable[[Any], Any], items: list[Any], ctx: Context) -> list[dict[str, Any]]:
    """Each item's outcome in order; an item that raises does not stop the others."""
    outcomes = []
    for item in items:
        try:
            value = fn(envelope.decode(item, ctx.signer))
            outcomes.append(envelope.ok(value, ctx.signer))
        except Exception as exc:
            outcomes.append(envelope.error(exc))
    return outcomes


@shared_task(name=RUN_FUNCTION_CHUNK, bind=True)
def run_function_chunk(
    self: Any, job_id: str, step_id: str, chunk_index: int, start: int, items: list[Any]
) -> dict[str, Any]:
    ctx = worker_context()
    task_id = self.request.id
    begun = service.start_task(ctx, task_id, self.request.hostname or "?")
    if begun is None:
        return {"chunk": chunk_index, "skipped": True}
    tag = f"[items {start}-{start + len(items) - 1}]"
    with captured_output(tag) as logs:
        try:
            fn = load_function(ctx, step_id, begun.step_spec["function"])
        except Exception as exc:
            failure = envelope.error(exc)
            outcomes = None
        else:
            outcomes = run_chunk(fn, items, ctx)
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
        )
        return {"chunk": chunk_index, "failed": len(items)}
    failed = sum(1 for o in outcomes if not o["ok"])
    service.finish_task(ctx, task_id, ok=True, results=outcomes, failed_items=failed, logs=logs)
    return {"chunk": chunk_index, "failed": failed}


@shared_task(name=GATHER_FUNCTION_STEP)
def gather_function_step(job_id: str, step_id: str) -> str:
    return service.gather_function_step(worker_context(), step_id).value
