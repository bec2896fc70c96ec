"""A function step's chunk run in the sandbox: the worker's half of the bargain.

The worker checks every signature (the function's and each pickled item's)
without unpickling anything, hands the sandbox the bytes, and turns what comes
back into result envelopes: JSON values as they are, pickle bytes signed as
this step's results without being loaded. So no user pickle is ever loaded
in a process that holds jobsys's key, database or broker.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded

from jobsys import envelope
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.signing import Binding, Purpose
from jobsys.specs import mem_bytes
from workers.sandbox.launcher import SandboxUser
from workers.sandbox.runner import ChunkRun, Sandbox, SandboxError

#: The runner's own deadline for a chunk; Celery's time limits end it sooner.
NO_LIMIT_S = 7 * 24 * 3600.0

#: This pool process's sandboxes, by pid (a forked pool process starts its own)
#: and by whether they have a network.
_boxes: dict[tuple[int, bool], Sandbox] = {}


class LoadFailed(Exception):
    """Raised when the step's function could not be loaded in the sandbox."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(failure["error"]["message"])
        self.failure = failure


def new_sandbox(settings: Settings, *, network: bool = False) -> Sandbox:
    """A sandbox as this worker's settings make it (not yet started): the one a
    chunk runs in, and the one the worker's start-up probe tries."""
    return Sandbox(
        SandboxUser.named(settings.sandbox_user),
        hide=[settings.data_dir],
        network=network,
        binds=settings.sandbox_mounts,
    )


def sandbox_for(ctx: Context, *, network: bool = False) -> Sandbox:
    key = (os.getpid(), network)
    box = _boxes.get(key)
    if box is None:
        box = new_sandbox(ctx.settings, network=network)
        for inherited in [k for k in _boxes if k[0] != key[0]]:
            del _boxes[inherited]  # a parent's, inherited by a fork: not ours to use
        _boxes[key] = box
    return box


def run_sandboxed(
    ctx: Context,
    job_id: str,
    step_id: str,
    function: Any,
    items: Sequence[Any],
    on_line: Callable[[str, str], None],
    *,
    env: Mapping[str, str] | None = None,
    memory_limit: str | None = None,
    network: bool = False,
) -> list[dict[str, Any]]:
    """Each item's outcome envelope, in order, as ``run_chunk`` gives them.

    Raises LoadFailed when the function cannot be loaded (each item then fails
    with its reason), SignatureError for a pickle not signed for this step.
    Celery's soft time limit is honoured as in the worker's own process; its
    hard limit kills the pool process, and bubblewrap takes the sandbox with it.
    ``memory_limit`` and ``network`` are the step's own (checked at submit, and
    ``network`` again here against this worker's settings)."""
    settings = ctx.settings
    if network and not settings.sandbox_allow_network:
        raise LoadFailed(
            envelope.error(
                SandboxError(
                    "the step asks for the network, which this worker's operator does not "
                    "allow (JOBSYS_SANDBOX_ALLOW_NETWORK)"
                )
            )
        )
    legacy = settings.accept_legacy_signatures
    as_item = Binding(Purpose.ITEMS, job_id, step_id)
    request = {
        "function": _function(ctx, function, Binding(Purpose.FUNCTION, job_id, step_id), legacy),
        # JSON as it is (a stored JSON item is never shaped like a pickle), a
        # signed pickle as its verified raw base64.
        "items": [
            envelope.unsign_for_wire(i, ctx.signer, as_item, legacy=legacy)
            if type(i) is dict
            else i
            for i in items
        ],
        "memory": mem_bytes(memory_limit or settings.sandbox_mem),
        "files": settings.sandbox_max_files,
        # Counted per real user: only a root worker's sandbox has a user of its own
        # (sandbox_user); a user namespace maps to the worker's user, whose other
        # processes would count too.
        "procs": settings.sandbox_max_procs if os.geteuid() == 0 else None,
        # The step's secrets, as environment variables of the chunk's process only.
        "env": dict(env or {}),
    }
    box = sandbox_for(ctx, network=network)
    deadline = time.monotonic() + NO_LIMIT_S
    as_result = Binding(Purpose.RESULT, job_id, step_id)
    try:
        run = box.run(request, on_line, deadline=deadline)
    except SoftTimeLimitExceeded as exc:
        # The item running when the limit passed fails with it; those after it never ran.
        done = _envelopes(ctx, box.partial.outcomes, as_result)
        skipped = SoftTimeLimitExceeded("not run: the chunk passed its soft time limit")
        rest = len(items) - len(done) - 1
        return [*done, envelope.error(exc), *[envelope.error(skipped)] * max(rest, 0)]
    if run.outcomes and all(f.get("load") for f in run.outcomes):
        raise LoadFailed({"ok": False, "error": _error(run.outcomes[0])})
    outcomes = _envelopes(ctx, run.outcomes, as_result)
    if len(outcomes) < len(items):
        lost = SandboxError(_ended(run))
        outcomes += [envelope.error(lost)] * (len(items) - len(outcomes))
    return outcomes


def _function(ctx: Context, ref: Any, binding: Binding, legacy: bool) -> dict[str, Any]:
    """The function as the sandbox takes it: an import path, or the verified
    bytes of its signed pickle (verified here, loaded only there)."""
    if envelope.is_pickled(ref):
        wire = envelope.unsign_for_wire(ref, ctx.signer, binding, legacy=legacy)
        return {"pickle": wire[envelope.PICKLE_KEY]}
    return {"import": ref}


def _envelopes(
    ctx: Context, frames: Sequence[dict[str, Any]], binding: Binding
) -> list[dict[str, Any]]:
    """Outcome frames as stored outcomes. A scalar JSON result, most of them,
    needs no check, and is taken here without a call per item (that call was
    most of what a cheap chunk cost the worker)."""
    scalars = _SCALARS
    return [
        {"ok": True, "value": f["json"]}
        if f.get("ok") is True and type(f.get("json", f)) in scalars
        else _envelope(ctx, f, binding)
        for f in frames
    ]


def _envelope(ctx: Context, frame: dict[str, Any], binding: Binding) -> dict[str, Any]:
    """An outcome frame as a stored outcome; nothing in it is trusted beyond its shape."""
    if not frame.get("ok"):
        return {"ok": False, "error": _error(frame)}
    if "pickle" in frame:
        try:
            data = base64.b64decode(frame["pickle"], validate=True)
        except (TypeError, ValueError):
            return envelope.error(SandboxError("the sandbox sent a result that is not base64"))
        repr_text = str(frame.get("repr", ""))[:200]
        signed = ctx.signer.sign(data, binding)
        return {"ok": True, "value": {envelope.PICKLE_KEY: signed, "repr": repr_text}}
    value = frame.get("json")
    if _holds_envelope(value):
        # Read back it would pass for a signed pickle: only the zygote's own
        # pickling may make one, and it never sends one as JSON.
        return envelope.error(SandboxError("the sandbox sent a JSON result shaped like a pickle"))
    return {"ok": True, "value": value}


#: JSON values that cannot hold a pickle's envelope (``json: null`` is a None result).
_SCALARS = frozenset({int, float, str, bool, type(None)})


def _holds_envelope(value: Any) -> bool:
    if isinstance(value, dict):
        return envelope.PICKLE_KEY in value or any(_holds_envelope(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_envelope(v) for v in value)
    return False


def _error(frame: dict[str, Any]) -> dict[str, Any]:
    error = frame.get("error") if isinstance(frame.get("error"), dict) else {}
    return {
        "type": str(error.get("type", "SandboxError"))[:200],
        "message": str(error.get("message", "the sandbox sent no reason")),
        "traceback": str(error.get("traceback", "")),
    }


def _ended(run: ChunkRun) -> str:
    if run.signal:
        how = f"was killed by signal {run.signal}"
    else:
        how = f"exited with status {run.exit_code}"
    return f"not run: the chunk's sandboxed process {how} (a crash, or past its memory limit)"
