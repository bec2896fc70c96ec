"""The sandbox's resident process: forks one fresh child per chunk and runs it.

Started by ``workers.sandbox.launcher`` inside bubblewrap, by exec, as a script
(``python -I zygote.py``): it imports nothing of jobsys, only the standard
library and cloudpickle, and it never held a jobsys secret. It is the only
place user pickles are loaded.

Protocol (frames: a 4-byte big-endian length, then UTF-8 JSON):

- stdin, from the worker: one request per chunk (read by the child forked
  ahead for it), ``{"function": F, "items": [I, ...], "env": {...}, "memory":
  bytes, "files": n, "procs": n}`` (each limit null for none), where F is
  ``{"import": "module:attr"}`` or ``{"pickle": base64}`` and each I is a JSON
  value or ``{"$pickle": base64}``.
- the control descriptor (``--control-fd``), from the worker: ``{"kill": n}``
  ends chunk n (counted from 0), if it is still running; ``{"soft": n}``
  raises SoftTimeLimitExceeded in chunk n's running item (its soft time
  limit passed): that item fails with it, the items after it are not run,
  and the chunk reports as usual.
- the results descriptor (``--results-fd``), to the worker: the items'
  outcomes in order, in batches: ``{"from": n, "values": [V, ...]}`` (items
  n, n+1, ... returned these JSON values) or ``{"outcomes": [O, ...]}``, where O is
  ``{"i": n, "ok": true, "json": value}``, ``{"i": n, "ok": true, "pickle":
  base64, "repr": text}`` or ``{"i": n, "ok": false, "error": {"type",
  "message", "traceback"}}``; ``{"done": n}`` once every outcome
  and line is out; then ``{"exit": code, "signal": n}`` once the chunk's
  process is gone (a chunk that crashed says only this).
- stdout and stderr: the chunk's own output, line by line (the live log).

Nothing of one chunk reaches the next: each runs in a child forked from this
clean process, in a folder of its own; when it ends, every process it left
in the sandbox is killed and every file it wrote is removed.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import itertools
import json
import math
import os
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

import cloudpickle

try:  # the worker's own fast JSON, when its environment has it
    import orjson
except ImportError:  # pragma: no cover - jobsys pins it
    orjson = None

HEADER = struct.Struct(">I")
#: Taken before user code runs: a chunk that replaces ``builtins.len`` still
#: gets its frames written whole.
_len = len
#: The largest request frame accepted (a chunk's items travel in it).
MAX_FRAME = 1 << 30
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
#: The most modules one chunk's imports add to the zygote.
_MAX_PRELOAD = 2000
#: A child's exit status when stdin closed before its request came: the zygote stops.
_STDIN_CLOSED = 75


def read_frame(fd: int) -> Any:
    """The next JSON frame on ``fd``; None at end of file."""
    raw = read_raw_frame(fd)
    return None if raw is None else _loads(raw)


def read_raw_frame(fd: int) -> bytes | None:
    """The next frame's body on ``fd``, unparsed; None at end of file."""
    head = _read_exactly(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over the limit")
    body = _read_exactly(fd, size)
    if body is None:
        raise EOFError("the stream ended inside a frame")
    return body


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts, got = [], 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            if got == 0:
                return None
            raise EOFError("the stream ended inside a frame")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def write_frame(fd: int, obj: Any) -> None:
    body = _dumps(obj)
    write_all(fd, HEADER.pack(_len(body)) + body)


def _dumps(obj: Any) -> bytes:
    """JSON bytes: orjson where it can (several times the standard library's
    speed on a chunk's outcomes), the standard library where it cannot (an
    integer past 64 bits; the worker reads those back exactly, see
    ``jobsys.fastjson``). NaN never gets here: values that hold one travel
    pickled."""
    if orjson is not None:
        try:
            return bytes(orjson.dumps(obj))
        except TypeError:
            pass
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


def _loads(data: bytes) -> Any:
    return orjson.loads(data) if orjson is not None else json.loads(data)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _json_faithful(value: Any) -> bool:
    # jobsys.envelope's rule, restated: this script imports nothing of jobsys.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if isinstance(value, dict) and "$pickle" in value:
        return False
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SoftTimeLimitExceeded(Exception):
    """Raised in the running item when the chunk's soft time limit passes (named
    as Celery names it: what an item's error says is the same as unsandboxed)."""


def _soft_limit(signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded("the chunk passed its soft time limit")


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _load(ref: dict[str, Any]) -> Any:
    """The step's function: ``{"import": "module:attr"}`` or ``{"pickle": base64}``."""
    if "pickle" in ref:
        return cloudpickle.loads(base64.b64decode(ref["pickle"]))
    module_name, _, attr = ref["import"].partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _item(item: Any) -> Any:
    """An item: a JSON value as it is, or ``{"$pickle": base64}`` (with an
    optional ``repr``, as ``jobsys.envelope`` shapes it) to unpickle."""
    if isinstance(item, dict) and "$pickle" in item and set(item) <= {"$pickle", "repr"}:
        return cloudpickle.loads(base64.b64decode(item["$pickle"]))
    return item


def _pickled(i: int, value: Any) -> dict[str, Any]:
    """Item ``i``'s outcome for a result JSON does not carry."""
    data = base64.b64encode(cloudpickle.dumps(value)).decode()
    return {"i": i, "ok": True, "pickle": data, "repr": _short_repr(value)}


class _Batch:
    """Outcomes sent a batch at a time (one frame and one write per batch, not per
    item), at least every ``FLUSH_S`` so a slow chunk's progress still shows.

    A run of results that JSON carries, the common case, goes as one compact
    frame (``{"from": n, "values": [...]}``): a dict per item cost the chunk's
    process and the worker more than running a cheap item did."""

    SIZE = 256
    FLUSH_S = 0.05

    def __init__(self, fd: int) -> None:
        self.fd, self.since = fd, time.monotonic()
        self.start = 0  # the index of the first pending value
        self.values: list[Any] = []
        self.pending: list[dict[str, Any]] = []

    def value(self, i: int, value: Any) -> None:
        """Item ``i`` returned ``value``, which JSON carries."""
        if self.pending:
            self.flush()
        if not self.values:
            self.start = i
        self.values.append(value)
        self._due()

    def add(self, outcome: dict[str, Any]) -> None:
        if self.values:
            self.flush()
        self.pending.append(outcome)
        self._due()

    def _due(self) -> None:
        count = _len(self.values) + _len(self.pending)
        if count >= self.SIZE or time.monotonic() - self.since >= self.FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.values:
            start, values = self.start, self.values
            self._write(
                {"from": start, "values": values},
                lambda: [{"i": start + n, "ok": True, "json": v} for n, v in enumerate(values)],
            )
            self.values = []
        if self.pending:
            pending = self.pending
            self._write({"outcomes": pending}, lambda: pending)
            self.pending = []
        self.since = time.monotonic()

    def _write(self, frame: dict[str, Any], outcomes: Any) -> None:
        """Write ``frame``; if JSON cannot carry it after all, its ``outcomes()``
        one by one, each that still cannot be carried failing with the reason."""
        try:
            write_frame(self.fd, frame)
        except (TypeError, ValueError):
            for outcome in outcomes():
                try:
                    write_frame(self.fd, {"outcomes": [outcome]})
                except (TypeError, ValueError) as exc:
                    failed = {"i": outcome["i"], "ok": False, "error": _error(exc)}
                    write_frame(self.fd, {"outcomes": [failed]})


def run_chunk(request: dict[str, Any], results_fd: int) -> None:
    """In the chunk's own process: each item's outcome, in order, on ``results_fd``."""
    batch = _Batch(results_fd)
    try:
        fn = _load(request["function"])
        if not callable(fn):
            raise TypeError(f"the step's function is not callable (a {type(fn).__name__})")
    except BaseException as exc:
        failure = _error(exc)
        for i in range(len(request["items"])):
            batch.add({"i": i, "ok": False, "error": failure, "load": True})
        batch.flush()
        return
    items = request["items"]
    for i, item in enumerate(items):
        try:
            value = fn(_item(item))
            pickled = None if _json_faithful(value) else _pickled(i, value)
        except SoftTimeLimitExceeded as exc:
            # As in the worker's own process: this item fails with the limit, the
            # rest are not run, and the chunk still reports before the hard limit.
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            batch.add({"i": i, "ok": False, "error": _error(exc)})
            skipped = _error(SoftTimeLimitExceeded("not run: the chunk passed its soft time limit"))
            for rest in range(i + 1, _len(items)):
                batch.add({"i": rest, "ok": False, "error": skipped})
            break
        except BaseException as exc:  # an item that raises does not stop the others
            batch.add({"i": i, "ok": False, "error": _error(exc)})
        else:
            if pickled is None:
                batch.value(i, value)
            else:
                batch.add(pickled)
    batch.flush()


def _child(results_fd: int, workdir: str, imports_fd: int, loaded: int) -> None:
    """A chunk's process, forked before its request came: it reads the request
    from stdin, runs it and exits."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _soft_limit)
    os.chdir(workdir)  # before the request comes, as what follows
    if not select.select([0], [], [], 0)[0]:
        _warm_up()
    request = read_frame(0)
    if request is None:
        os._exit(_STDIN_CLOSED)  # the worker is done with this sandbox
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the next request is not this chunk's to read
    os.close(null)
    for key, limit in (
        ("memory", resource.RLIMIT_AS),
        ("files", resource.RLIMIT_NOFILE),
        ("procs", resource.RLIMIT_NPROC),
    ):
        value = request.get(key)
        if value:
            resource.setrlimit(limit, (value, value))
    os.environ.update(request.get("env") or {})
    os.environ["HOME"] = os.environ["TMPDIR"] = tempfile.tempdir = workdir
    code = 0
    try:
        run_chunk(request, results_fd)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    # Whatever the chunk left running prints nowhere now: every line the worker
    # reads before this chunk's end is this chunk's, and none after it.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    if code == 0:
        # Output first, then this: the worker goes on without waiting for the exit.
        write_frame(results_fd, {"done": len(request["items"])})
    new = _new_imports(loaded)
    with contextlib.suppress(OSError):
        write_all(imports_fd, json.dumps(new).encode())
    os._exit(code)


def _new_imports(loaded: int) -> list[str]:
    """The modules this chunk imported (the zygote had ``loaded``), newest first.

    Read from the end of ``sys.modules`` (a dict keeps its insertion order):
    a set of all its names touched each name, which made the process copy a
    few hundred shared pages, its largest cost after the fork itself. A
    chunk that also removed modules may be under-counted; these names only
    say what is worth loading ahead."""
    added = _len(sys.modules) - loaded
    return list(itertools.islice(reversed(sys.modules), max(added, 0)))


def _warm(value: Any) -> Any:
    """The warm-up's function: a result JSON carries, and one it does not."""
    return {value} if value is None else value


#: The warm-up's chunks: the paths a chunk takes (a pickled function and an
#: imported one), on values of each JSON kind.
_WARM_UPS = (
    {
        "function": {"pickle": base64.b64encode(cloudpickle.dumps(_warm)).decode()},
        "items": [0, "", 0.5, True, [0], {"k": 0}, None],
    },
    {"function": {"import": "os.path:basename"}, "items": ["/a"]},
)


def _warm_up() -> None:
    """Run a chunk of the zygote's own code, with the output thrown away.

    A forked process pays a page fault for each page it first writes (copy on
    write); a chunk's first item used to pay some 130 of them, half of a
    one-item chunk's time. Taken here, they are paid while the child waits
    for its request, and a chunk finds its pages its own. Only this script's
    code runs: nothing here is a job's."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for chunk in _WARM_UPS:
            run_chunk(chunk, null)
    finally:
        os.close(null)


def _prefork(results_fd: int, control_fd: int, scratch: str) -> tuple[int, int]:
    """The next chunk's process, started ahead so that a chunk does not wait
    for the fork: its pid, and the pipe it names its new imports on."""
    workdir = tempfile.mkdtemp(dir=scratch)
    imports_read, imports_write = os.pipe()
    loaded = _len(sys.modules)  # the chunk names the ones it adds to these
    pid = os.fork()
    if pid == 0:
        try:
            os.close(control_fd)  # the worker's kills are for the zygote to read
            os.close(imports_read)
            _child(results_fd, workdir, imports_write, loaded)
        finally:
            os._exit(70)
    os.close(imports_write)
    return pid, imports_read


def _preload(imports_fd: int, allowed: tuple[str, ...]) -> None:
    """Import, here in the zygote, the installed modules the last chunk imported,
    so that the next chunks' fresh processes find them loaded (a fresh process
    that imports a library anew each chunk pays its whole import every time).

    Only modules whose files lie on the worker's read-only import path: those
    are the operator's installed code, the same for every job; never a file a
    chunk wrote."""
    with os.fdopen(imports_fd, "rb") as f:
        data = f.read(1 << 20)
    try:
        names = json.loads(data) if data else []
    except ValueError:
        return
    for name in names[:_MAX_PRELOAD] if isinstance(names, list) else ():
        if not isinstance(name, str) or name in sys.modules:
            continue
        spec = _find_spec(name)
        origin = getattr(spec, "origin", None) or ""
        if origin and os.path.realpath(origin).startswith(allowed):
            with contextlib.suppress(BaseException):
                importlib.import_module(name)


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _kill_the_rest() -> None:
    """Kill every process of the sandbox but its init and this one: whatever a
    chunk started (a daemon, a double fork) ends with it."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, me):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)


def _clear(folder: str, keep: frozenset[str]) -> None:
    """Remove everything in ``folder`` but the mounted code paths in ``keep``
    (and the folders leading to them)."""

    def writable(func: Any, path: str, _: Any) -> None:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)

    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path in keep:
            continue
        if any(k.startswith(path + os.sep) for k in keep):
            _clear(path, keep)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=writable)
        else:
            os.unlink(path)


def serve(results_fd: int, control_fd: int, scratch: str, shared: tuple[str, ...] = ()) -> None:
    """Run requests from stdin until it closes.

    Each request is read by the child forked ahead for it, straight from
    stdin (one hop less than through this process); kills come on the
    control pipe, numbered by the chunk they mean, so a late one never ends
    the chunk after."""
    # The read-only import path; never the scratch space chunks may write to.
    allowed = tuple(
        p.rstrip(os.sep) + os.sep
        for p in sys.path
        if p.startswith(os.sep) and not (p + os.sep).startswith(scratch.rstrip(os.sep) + os.sep)
    )
    mounted = frozenset(p.rstrip(os.sep) for p in (*sys.path, *shared) if p.startswith(os.sep))
    control = _Control(control_fd)
    for number in itertools.count():
        gc.freeze()  # what the zygote holds stays unscanned: fewer pages copied per fork
        pid, imports = _prefork(results_fd, control_fd, scratch)
        status = _wait(pid, number, control)
        code = os.waitstatus_to_exitcode(status)
        if code == _STDIN_CLOSED:
            os.close(imports)
            return
        write_frame(results_fd, {"exit": max(code, 0), "signal": max(-code, 0)})
        # Cleaned up before the next child is forked: nothing of this chunk
        # is left when the next one starts.
        _kill_the_rest()
        _clear(scratch, mounted)
        _preload(imports, allowed)


class _Control:
    """Kill requests from the worker: ``{"kill": n}`` frames."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def order(self, number: int) -> str | None:
        """What a waiting frame asks of chunk ``number``: ``kill`` (also when the
        worker has gone), ``soft``, or None (a stale one, for an earlier chunk)."""
        frame = read_frame(self.fd)
        if frame is None or frame.get("kill") == number:
            return "kill"
        return "soft" if frame.get("soft") == number else None


def _wait(pid: int, number: int, control: _Control) -> int:
    """The chunk's exit status; a kill from the worker ends it first, a soft
    limit is passed on to its running item."""
    watch = os.pidfd_open(pid)
    try:
        while True:
            ready, _, _ = select.select([watch, control.fd], [], [])
            if watch in ready:
                return os.waitpid(pid, 0)[1]
            order = control.order(number)
            if order == "kill":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            elif order == "soft":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
    finally:
        os.close(watch)


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def main(argv: list[str]) -> None:
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    # Import from where the worker does (its project, its site-packages), first.
    first = [p for p in args.get("--sys-path", "").split(os.pathsep) if p]
    sys.path[:] = first + [p for p in sys.path if p not in first]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if "--uid" in args and os.getuid() == 0:
        drop_privileges(int(args["--uid"]), int(args["--gid"]))
    # Not dumpable: a chunk (the same user) cannot ptrace this process and so
    # reach the chunks that come after it.
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    write_frame(int(args["--results-fd"]), {"ready": os.getpid(), "uid": os.getuid()})
    shared = tuple(p for p in args.get("--keep", "").split(os.pathsep) if p)
    # A chunk's output, a line a write; made here once, not in each chunk's
    # process (where making them cost it a hundred copied pages).
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    serve(int(args["--results-fd"]), int(args["--control-fd"]), args["--scratch"], shared)


if __name__ == "__main__":
    main(sys.argv[1:])
