"""The worker's side of a sandbox: start the zygote, hand it chunks, read what comes back.

One ``Sandbox`` per pool process, started at its first chunk and kept for the
next ones (each chunk still gets a fresh process, forked by the zygote). The
worker reads only JSON frames and text lines from it: a result that JSON
cannot carry arrives as pickle bytes, which the worker signs without loading.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded

from jobsys.fastjson import dumps, loads
from workers.sandbox import zygote
from workers.sandbox.launcher import SandboxUser, bwrap_argv

#: How long a new sandbox may take to say it is ready.
START_TIMEOUT_S = 30.0
#: After a kill, how long the zygote has to report that the chunk ended.
KILL_WAIT_S = 5.0
#: The longest log line kept whole (longer ones are cut, as a terminal would wrap).
MAX_LINE = 64 * 1024


class SandboxError(RuntimeError):
    """Raised when the sandbox cannot start, dies, or breaks its protocol."""


@dataclass
class ChunkRun:
    """What one chunk sent back: each item's outcome frame, in order, and its end."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = 0
    signal: int = 0


class _Frames:
    """Frames parsed as bytes arrive on the results pipe."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        found = []
        head = zygote.HEADER.size
        while len(self._buffer) >= head:
            (size,) = zygote.HEADER.unpack(self._buffer[:head])
            if size > zygote.MAX_FRAME:
                raise SandboxError(f"the sandbox sent a frame of {size} bytes")
            if len(self._buffer) < head + size:
                break
            body = bytes(self._buffer[head : head + size])
            del self._buffer[: head + size]
            try:
                found.append(loads(body))
            except ValueError as exc:
                raise SandboxError(f"the sandbox sent a frame that is not JSON: {exc}") from exc
        return found


class _Lines:
    def __init__(self, stream: str, emit: Callable[[str, str], None]) -> None:
        self.stream, self._emit, self._pending = stream, emit, b""

    def feed(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        if len(self._pending) > MAX_LINE:
            lines.append(self._pending)
            self._pending = b""
        for line in lines:
            self._emit(self.stream, line.decode(errors="replace"))

    def close(self) -> None:
        if self._pending:
            self._emit(self.stream, self._pending.decode(errors="replace"))
            self._pending = b""


def _frame(obj: Any) -> bytes:
    body = dumps(obj)
    return zygote.HEADER.pack(len(body)) + body


def _values(frame: dict[str, Any], first: int) -> list[dict[str, Any]]:
    """A compact frame's run of JSON results as outcome frames, items ``first`` on."""
    values = frame["values"]
    if frame.get("from") != first or not isinstance(values, list):
        raise SandboxError(f"the sandbox sent results out of order: {str(frame)[:200]}")
    return [{"i": i, "ok": True, "json": v} for i, v in enumerate(values, first)]


def _ignore(stream: str, line: str) -> None:
    """Output outside a chunk (the zygote's own start-up) goes nowhere."""


class Sandbox:
    """A zygote in its own bubblewrap sandbox, for one pool process."""

    def __init__(
        self,
        user: SandboxUser,
        *,
        hide: Sequence[str] = (),
        network: bool = False,
        binds: Sequence[str] = (),
    ):
        self.user, self.hide, self.network = user, list(hide), network
        self.binds = list(binds)
        self._proc: subprocess.Popen[bytes] | None = None
        self._results = self._control = -1
        self._number = -1
        self._frames = _Frames()
        self._queue: deque[Any] = deque()
        self._selector: selectors.BaseSelector | None = None
        self._lines = (_Lines("stdout", _ignore), _Lines("stderr", _ignore))
        self._exit_due = False
        #: The chunk being run (or last run): its outcomes so far, if it was cut short.
        self.partial = ChunkRun()
        self.uid: int | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        read_end, write_end = os.pipe()
        control_read, control_write = os.pipe()
        argv = bwrap_argv(
            results_fd=write_end,
            control_fd=control_read,
            user=self.user,
            hide=self.hide,
            network=self.network,
            binds=self.binds,
        )
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_end, control_read),
                env={"PATH": "/usr/bin:/bin"},
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_end)
            os.close(control_write)
            raise SandboxError(f"could not start bubblewrap: {exc}") from exc
        finally:
            os.close(write_end)
            os.close(control_read)
        self._control, self._number = control_write, -1
        self._results, self._frames = read_end, _Frames()
        self._queue.clear()
        self._exit_due = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(read_end, selectors.EVENT_READ, None)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._selector.register(self._proc.stdout.fileno(), selectors.EVENT_READ, 0)
        self._selector.register(self._proc.stderr.fileno(), selectors.EVENT_READ, 1)
        said: list[str] = []  # bubblewrap's own complaint, if it has one
        self._lines = tuple(_Lines(n, lambda _, line: said.append(line)) for n in ("out", "err"))
        try:
            ready = self._next_frame(time.monotonic() + START_TIMEOUT_S)
        except (SandboxError, TimeoutError) as exc:
            ready = {"error": str(exc)}
        if ready is None or "ready" not in ready:
            self._drain_output()
            for lines in self._lines:
                lines.close()
            self.close()
            why = "; ".join(said[-5:]) or (ready or {}).get("error") or "it exited at once"
            raise SandboxError(f"the sandbox did not start: {why}")
        self._lines = (_Lines("stdout", _ignore), _Lines("stderr", _ignore))
        self.uid = ready.get("uid")

    def run(
        self, request: dict[str, Any], on_line: Callable[[str, str], None], *, deadline: float
    ) -> ChunkRun:
        """Run one chunk; ``on_line(stream, text)`` gets its output as it comes.

        It returns when the chunk says it is done (its process's exit and the
        sandbox's clean-up follow while the worker reports), or when the process
        ended without saying so (a crash, a memory limit). Celery's soft time
        limit is passed on into the chunk, which then reports as it would in the
        worker's own process; any other exception while waiting (a cancel, the
        soft limit again) kills the chunk's process before it propagates, so it
        never runs on unseen."""
        self._hand_over(request, deadline, (_Lines("stdout", on_line), _Lines("stderr", on_line)))
        run = self.partial = ChunkRun()
        softened = False
        try:
            while True:
                try:
                    frame = self._next_frame(deadline)
                except SoftTimeLimitExceeded:
                    if softened:
                        raise
                    # Passed on: the chunk's running item fails with it, the rest
                    # are not run, and the chunk reports every outcome it has.
                    softened = True
                    zygote.write_all(self._control, _frame({"soft": self._number}))
                    continue
                if frame is None:
                    raise SandboxError("the sandbox ended in the middle of a chunk")
                if "done" in frame:
                    self._exit_due = True
                    self._drain_output()
                    return run
                if "exit" in frame:
                    run.exit_code, run.signal = int(frame["exit"]), int(frame["signal"])
                    self._drain_output()
                    return run
                if "values" in frame:
                    run.outcomes += _values(frame, len(run.outcomes))
                    continue
                for outcome in frame.get("outcomes", ()):
                    if not isinstance(outcome, dict) or outcome.get("i") != len(run.outcomes):
                        raise SandboxError(
                            f"the sandbox sent an outcome out of order: {outcome!r:.200}"
                        )
                    run.outcomes.append(outcome)
        except BaseException:
            self._kill_chunk()
            raise
        finally:
            for lines in self._lines:
                lines.close()

    def _hand_over(
        self, request: dict[str, Any], deadline: float, lines: tuple[_Lines, _Lines]
    ) -> None:
        """Send the chunk's request, then read the end of the chunk before it.

        In that order: the request waits in the pipe for the next chunk's
        process while the zygote cleans up after the last one and forks it
        (which used to wait for the worker to hear of the last one's exit).
        Output is this chunk's (``lines``) from then on: its process may print
        while the end of the last one is read, and the last one printed its
        last before it said it was done."""
        if not self.alive:
            self.close()  # what is left of one that died (its pipes), if any
            self.start()
        self._send_request(request, lines)
        try:
            in_step = not self._exit_due or self._await_exit(deadline)
        except BaseException:
            self.close()  # interrupted (a time limit): the request must not run unseen
            raise
        if not in_step:
            self.start()  # closed: a new one gets the request
            self._send_request(request, lines)

    def _send_request(self, request: dict[str, Any], lines: tuple[_Lines, _Lines]) -> None:
        self._lines = lines
        self._number += 1
        try:
            self._send(request)
        except OSError as exc:
            self.close()
            raise SandboxError(f"the sandbox went away: {exc}") from exc

    def _await_exit(self, deadline: float) -> bool:
        """Read the end of the last chunk, which said it was done before it
        exited; False (and the sandbox closed) when that is not what came."""
        self._exit_due = False
        try:
            frame = self._next_frame(deadline)
        except (SandboxError, TimeoutError):
            frame = None
        if frame is None or "exit" not in frame:
            self.close()
            return False
        return True

    def _send(self, obj: Any) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(_frame(obj))
        self._proc.stdin.flush()

    def _kill_chunk(self) -> None:
        """End the running chunk; the whole sandbox if the zygote does not answer."""
        try:
            zygote.write_all(self._control, _frame({"kill": self._number}))
            deadline = time.monotonic() + KILL_WAIT_S
            while (frame := self._next_frame(deadline)) is not None:
                if "exit" in frame:
                    self._exit_due = False
                    return
        except (OSError, SandboxError, TimeoutError):
            pass
        self.close()

    def _next_frame(self, deadline: float) -> Any:
        """The next frame from the results pipe, passing output lines on
        meanwhile; None when the sandbox has gone."""
        assert self._selector is not None
        while not self._queue:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the sandbox did not answer in time")
            for key, _ in self._selector.select(timeout=left):
                data = os.read(key.fd, 1 << 16)
                if key.data is not None:
                    if data:
                        self._lines[key.data].feed(data)
                    else:
                        self._selector.unregister(key.fd)
                elif not data:
                    return None
                else:
                    self._queue.extend(self._frames.feed(data))
        return self._queue.popleft()

    def _drain_output(self) -> None:
        """Pass on what the chunk printed before it said it was done (already in
        the pipes, since it flushed first)."""
        assert self._selector is not None
        while True:
            ready = [k for k, _ in self._selector.select(timeout=0) if k.data is not None]
            if not ready:
                return
            for key in ready:
                data = os.read(key.fd, 1 << 16)
                if data:
                    self._lines[key.data].feed(data)
                else:
                    self._selector.unregister(key.fd)

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, 9)
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._proc = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for fd in (self._results, self._control):
            if fd >= 0:
                os.close(fd)
        self._results = self._control = -1
        self._exit_due = False
