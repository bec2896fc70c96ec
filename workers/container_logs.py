"""A Docker step's log: followed live, then stored within its limits.

Each line is cut to ``JOBSYS_DOCKER_MAX_LOG_LINE_BYTES`` and a step keeps the
last ``JOBSYS_DOCKER_MAX_LOG_BYTES`` (and ``MAX_LOG_LINES`` lines) of its
output, after one line saying how much was not stored. Docker's own json-file
log of the container is bounded too (``LogLimits.docker_log``), since the
engine otherwise keeps everything a container writes on the host's disk.
Nothing here holds more than about one limit's worth of output per stream in memory.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from docker.types import LogConfig

from jobsys.service.progress import LogRecord

log = logging.getLogger(__name__)

#: Lines of a step's log stored at most, whatever their size: each is a database row.
MAX_LOG_LINES = 100_000
MIB = 1024 * 1024


@dataclass(frozen=True)
class LogLimits:
    """How much of a container's output is kept."""

    #: Each line is cut to this many bytes (``JOBSYS_DOCKER_MAX_LOG_LINE_BYTES``).
    line_bytes: int = 16 * 1024
    #: The stored log keeps the last this many bytes (``JOBSYS_DOCKER_MAX_LOG_BYTES``).
    total_bytes: int = 10 * MIB

    def docker_log(self) -> LogConfig:
        """Docker's own json-file log of the container, bounded: two files, each
        big enough to hold the stored tail with JSON's per-line overhead and escaping."""
        size_mib = math.ceil((2 * self.total_bytes + MAX_LOG_LINES * 80) / MIB)
        return LogConfig(
            type=LogConfig.types.JSON, config={"max-size": f"{size_mib}m", "max-file": "2"}
        )


STREAMS = ("stdout", "stderr")
#: Room for Docker's ``<RFC 3339 timestamp> `` before each line's text.
TS_ROOM = 64


@dataclass
class Seen:
    """Lines and bytes of one stream a reader went through (``done``: to its end),
    and (a follower's) the last of them within the limits, to store."""

    lines: int = 0
    bytes: int = 0
    done: bool = False
    kept: _Tail | None = None


def start_follower(
    container: Any,
    stream: str,
    limits: LogLimits,
    seen: Seen,
    on_output: Callable[[LogRecord], None] | None,
) -> threading.Thread:
    """Hand each line to ``on_output`` as the container writes it (the live view),
    and count every line written: Docker's rotation may drop the oldest before the
    stored copy is read, and its cut-off marker says how many lines are missing.

    The follower keeps the last ``limits.total_bytes`` of its stream too: when
    both followers read to the end, that is the stored copy (``followed_logs``),
    with no more requests after exit. Otherwise the stored copy is read again
    (``read_logs``), in order, so a hiccup here costs the live view (and the
    marker's exact count) only.
    """
    kept = seen.kept = _Tail(limits.total_bytes, MAX_LOG_LINES)

    def follow() -> None:
        try:
            chunks = log_stream(container, stream, follow=True)
            for entry in _records(chunks, stream, limits):
                seen.lines += 1
                seen.bytes += entry[2]
                kept.add(*entry)
                if on_output is not None:
                    on_output(entry[0])
            seen.done = True
        except Exception as exc:  # the container went away under us: nothing to lose
            log.debug("log follower for %s stopped: %s", stream, exc)

    thread = threading.Thread(target=follow, name=f"follow-{stream}", daemon=True)
    thread.start()
    return thread


def read_logs(
    container: Any, limits: LogLimits, seen: Mapping[str, Seen] | None = None
) -> tuple[LogRecord, ...]:
    """The container's stored log: the last ``limits.total_bytes`` (and
    ``MAX_LOG_LINES`` lines) of stdout and stderr in time order, each line cut
    to ``limits.line_bytes``, after one line saying what was not stored.

    Read as a stream, so memory stays near the limit however much was written;
    ``seen`` (the followers' counts) adds the lines Docker itself rotated away.
    """
    readers = {stream: log_stream(container, stream, follow=False) for stream in STREAMS}
    read = {stream: Seen() for stream in STREAMS}
    tail = _Tail(limits.total_bytes, MAX_LOG_LINES)
    try:
        merged = heapq.merge(
            *(_counted(_records(chunks, s, limits), read[s]) for s, chunks in readers.items()),
            key=lambda entry: entry[0].ts or datetime.min.replace(tzinfo=UTC),
        )
        for record, stored, full in merged:
            tail.add(record, stored, full)
    finally:
        for chunks in readers.values():
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    cut_lines, cut_bytes, exact = tail.cut_lines, tail.cut_bytes, True
    for stream, counted in (seen or {}).items():
        cut_lines += max(0, counted.lines - read[stream].lines)
        cut_bytes += max(0, counted.bytes - read[stream].bytes)
        exact = exact and counted.done
    return _stored(tail, cut_lines, cut_bytes, exact, limits)


def followed_logs(seen: Mapping[str, Seen], limits: LogLimits) -> tuple[LogRecord, ...] | None:
    """The stored log from what the followers kept, exactly as ``read_logs``
    would read it after exit, or None unless every follower read its stream to
    the end (then only reading it again gives the whole log)."""
    tails = [s.kept for s in seen.values()]
    if not all(s.done for s in seen.values()) or any(t is None for t in tails):
        return None
    tail = _Tail(limits.total_bytes, MAX_LOG_LINES)
    merged = heapq.merge(
        *(t.lines for t in tails if t is not None),
        key=lambda entry: entry[0].ts or datetime.min.replace(tzinfo=UTC),
    )
    for record, stored, full in merged:
        tail.add(record, stored, full)
    cut_lines = tail.cut_lines + sum(t.cut_lines for t in tails if t is not None)
    cut_bytes = tail.cut_bytes + sum(t.cut_bytes for t in tails if t is not None)
    return _stored(tail, cut_lines, cut_bytes, True, limits)


def _stored(
    tail: _Tail, cut_lines: int, cut_bytes: int, exact: bool, limits: LogLimits
) -> tuple[LogRecord, ...]:
    """The kept lines, after one saying how many were not stored (if any were)."""
    kept = [entry[0] for entry in tail.lines]
    if cut_lines:
        at_least = "" if exact else "at least "
        kept.insert(
            0,
            LogRecord(
                line=(
                    f"[jobsys: {at_least}{cut_lines:,} earlier lines ({_size(cut_bytes)}) not "
                    f"stored: a step's log keeps its last {_size(limits.total_bytes)} and "
                    f"{MAX_LOG_LINES:,} lines (JOBSYS_DOCKER_MAX_LOG_BYTES)]"
                ),
                stream="system",
                ts=kept[0].ts if kept else None,
            ),
        )
    return tuple(kept)


def log_stream(container: Any, stream: str, *, follow: bool) -> Iterator[bytes]:
    """One stream of the container's log, with Docker's timestamps, as it arrives.

    ``container.logs`` inspects the container first on every call, only to learn
    whether it has a TTY; ours never do (``run_container`` creates them without),
    so the log is asked for directly: four inspects fewer per step, each a round
    trip to the engine. Anything that is not an SDK container (no ``client.api``)
    still goes through ``logs``.
    """
    api = getattr(getattr(container, "client", None), "api", None)
    if api is None:
        chunks: Iterator[bytes] = container.logs(
            stdout=stream == "stdout",
            stderr=stream == "stderr",
            stream=True,
            follow=follow,
            timestamps=True,
        )
        return chunks
    params = {
        "stdout": int(stream == "stdout"),
        "stderr": int(stream == "stderr"),
        "timestamps": 1,
        "follow": int(follow),
        "tail": "all",
    }
    response = api._get(api._url("/containers/{0}/logs", container.id), params=params, stream=True)
    frames: Iterator[bytes] = api._get_result_tty(True, response, False)
    return frames


class _Tail:
    """The last lines of a log within a byte and a line budget, counting what falls out."""

    def __init__(self, max_bytes: int, max_lines: int) -> None:
        self.max_bytes, self.max_lines = max_bytes, max_lines
        self.lines: deque[tuple[LogRecord, int, int]] = deque()
        self.bytes = 0
        self.cut_lines = 0
        self.cut_bytes = 0

    def add(self, record: LogRecord, stored: int, full: int) -> None:
        self.lines.append((record, stored, full))
        self.bytes += stored
        while self.bytes > self.max_bytes or len(self.lines) > self.max_lines:
            _, dropped, dropped_full = self.lines.popleft()
            self.bytes -= dropped
            self.cut_lines += 1
            self.cut_bytes += dropped_full


def _counted(
    entries: Iterable[tuple[LogRecord, int, int]], seen: Seen
) -> Iterator[tuple[LogRecord, int, int]]:
    for entry in entries:
        seen.lines += 1
        seen.bytes += entry[2]
        yield entry
    seen.done = True


def _records(
    chunks: Iterable[bytes], stream: str, limits: LogLimits
) -> Iterator[tuple[LogRecord, int, int]]:
    """Docker's ``<timestamp> <text>`` lines as records cut to ``limits.line_bytes``,
    each with its stored and its full size in bytes."""
    cut = limits.line_bytes
    for raw, size in _split_lines(chunks, cut + TS_ROOM):
        ts, _, text = raw.partition(b" ")
        full = max(0, size - len(ts) - 1)
        if full > cut:
            line = (
                text[:cut].decode("utf-8", errors="ignore")
                + f" [jobsys: line cut at {cut:,} bytes; {full - cut:,} more not stored]"
            )
        else:
            line = text.decode("utf-8", errors="replace")
        when = _parse_ts(ts.decode("ascii", errors="replace"))
        yield LogRecord(line=line, stream=stream, ts=when), min(full, cut), full


def _split_lines(chunks: Iterable[bytes], keep: int) -> Iterator[tuple[bytes, int]]:
    """The lines of a byte stream, each as its first ``keep`` bytes and its full
    length: one line of a gigabyte (no newline ever) costs ``keep`` bytes here."""
    head = bytearray()
    size = 0
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if len(head) < keep:
                head += piece[: keep - len(head)]
            size += len(piece)
            if end < 0:
                break
            yield bytes(head), size
            head, size = bytearray(), 0
            start = end + 1
    if size:
        yield bytes(head), size


def _size(n: int) -> str:
    """``10 MiB``, ``185.5 KiB``, ``1,000 bytes``."""
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n:,} bytes"


def _parse_ts(text: str) -> datetime:
    # Docker writes RFC 3339 with nanoseconds; Python takes microseconds.
    try:
        head, _, frac = text.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    except ValueError:
        return datetime.now(UTC)
