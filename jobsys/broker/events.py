"""Job events on Redis Streams: status changes, progress and log lines.

One capped stream per job (``jobsys:events:<job_id>``), which a reader can
resume from any id it has seen (SSE's ``Last-Event-ID``), and one capped
global stream for dashboards. The database stays the durable record: a
stream that was trimmed or lost with a Redis restart costs the live view,
never a log line (those are stored when each task ends).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from jobsys.broker.slots import RedisSlots, Slots
from jobsys.errors import SpecError

log = logging.getLogger(__name__)

JOB_STREAM_MAXLEN = 10_000
GLOBAL_STREAM = "jobsys:events"
GLOBAL_STREAM_MAXLEN = 10_000
#: Every stream expires this long after its last event, even if its job never ends
#: (a job swept as lost, a Redis that lost the end event): no key lives forever.
LIVE_STREAM_TTL_S = 7 * 24 * 3600


#: The longest one ``read_many`` of a waiter blocks (it renews its slot and looks
#: at the database between reads).
WAIT_BLOCK_MS = 5_000
#: How long ``NullEventBus.read_many`` sleeps: how often its waiters read the database.
NULL_BUS_NAP_MS = 200

#: Where a reader starts when it has seen nothing: before every event.
START = "0-0"
#: A Redis stream id as every event carries it: ``<milliseconds>-<sequence>``,
#: ASCII digits only (``\d`` would take other scripts' digits, which Redis refuses).
_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_ID_PART = 2**64 - 1


def job_stream(job_id: str) -> str:
    return f"jobsys:events:{job_id}"


def parse_event_id(value: str, field: str) -> str:
    """``value`` if it is an event id a reader can resume after, else a SpecError
    naming ``field`` (the header or parameter it came in).

    Checked before any read: Redis refuses anything else on every read, and
    the id is echoed back into the stream, so it must not carry a newline.
    """
    found = _EVENT_ID.fullmatch(value)
    if found is None or any(int(part) > _MAX_ID_PART for part in found.groups()):
        shown = value if len(value) <= 60 else value[:60] + "..."
        raise SpecError(
            {
                field: f"{shown!r} is not an event id: send the id of the last event "
                "received, in the form <milliseconds>-<sequence> (e.g. 1718000000000-0), "
                "or leave it out to replay from the start"
            }
        )
    return value


@dataclass(frozen=True)
class Event:
    id: str
    type: str  # "status", "progress", "log"
    data: dict[str, Any]

    def to_sse(self) -> str:
        return f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(self.data)}\n\n"


class EventBus(Protocol):
    #: Counts the web threads that follow jobs live (streams, and long-polls that
    #: wait for a job), on the same Redis as the events; see ``jobsys.broker.slots``.
    slots: Slots

    def publish(
        self, job_id: str, type_: str, data: dict[str, Any], *, final: bool = False
    ) -> None:
        """Append one event; never raises (a live view is not worth failing a job).
        ``final``: the job's last status, so its stream gets the finished job's
        TTL (what ``expire`` does) in the same round trip."""

    def publish_many(
        self, job_id: str, type_: str, items: list[dict[str, Any]], *, final: bool = False
    ) -> None: ...

    def read(self, job_id: str, after: str, block_ms: int) -> list[Event]:
        """Events after ``after`` ("0" for all), waiting up to ``block_ms`` for the first."""

    def expire(self, job_id: str) -> None: ...

    def last_ids(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Each job's newest event id (``START`` for a job with no stream yet): where
        a waiter starts reading so that nothing published after this call is missed."""

    def read_many(self, after: dict[str, str], block_ms: int) -> list[tuple[str, Event]]:
        """``(job_id, event)`` for events after each job's id in ``after``, from all
        those streams in one read, waiting up to ``block_ms`` for the first (at most:
        a bus without live events returns sooner, and its waiters read the database)."""


class RedisEventBus:
    def __init__(
        self,
        client: redis.Redis,
        finished_ttl_s: int = 24 * 3600,
        *,
        slots_client: redis.Redis | None = None,
        wait_client: redis.Redis | None = None,
    ) -> None:
        self.client = client
        #: For waiters (``last_ids``, ``read_many``): they fall back to the database
        #: while Redis is away, so a failed call must fail at once, not after retries.
        self.wait_client = wait_client or client
        #: How long a finished job's stream is kept for late readers.
        self.finished_ttl_s = finished_ttl_s
        self.slots = Slots(shared=RedisSlots(slots_client or client))

    @classmethod
    def from_url(cls, url: str, finished_ttl_s: int = 24 * 3600) -> RedisEventBus:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=30)
        # Taking a slot happens inside a web request: with Redis down it must fail
        # at once (and fall back to the process's own count), not after redis-py's
        # ten retries; one retry covers a connection the server closed.
        slots_client = redis.Redis.from_url(
            url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 1)
        )
        # Reads block up to WAIT_BLOCK_MS: the socket timeout leaves room for that.
        wait_client = redis.Redis.from_url(
            url,
            socket_connect_timeout=1,
            socket_timeout=WAIT_BLOCK_MS / 1000 + 5,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, finished_ttl_s, slots_client=slots_client, wait_client=wait_client)

    def publish(
        self, job_id: str, type_: str, data: dict[str, Any], *, final: bool = False
    ) -> None:
        self.publish_many(job_id, type_, [data], final=final)

    def publish_many(
        self, job_id: str, type_: str, items: list[dict[str, Any]], *, final: bool = False
    ) -> None:
        if not items:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for data in items:
                fields = {"type": type_, "data": json.dumps(data)}
                # Exact (MAXLEN, not MAXLEN ~): the README promises 10,000 events per
                # job, and an approximate trim keeps up to a stream node more.
                pipe.xadd(job_stream(job_id), fields, maxlen=JOB_STREAM_MAXLEN, approximate=False)
                if type_ != "log":  # the dashboard wants changes, not every line
                    pipe.xadd(
                        GLOBAL_STREAM,
                        {**fields, "job_id": job_id},
                        maxlen=GLOBAL_STREAM_MAXLEN,
                        approximate=True,
                    )
            if final:
                pipe.expire(job_stream(job_id), self.finished_ttl_s)
            else:
                # Only where no TTL is set yet: the shorter one set at the job's end stays.
                pipe.expire(job_stream(job_id), LIVE_STREAM_TTL_S, nx=True)
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("event for job %s not published: %s", job_id, exc)

    def read(self, job_id: str, after: str, block_ms: int) -> list[Event]:
        # Redis reads BLOCK 0 as "wait for ever"; here 0 means "do not wait"
        block = block_ms if block_ms > 0 else None
        found = self.client.xread({job_stream(job_id): after}, count=500, block=block)
        return [event for _stream, entries in found or [] for event in _events(entries)]

    def last_ids(self, job_ids: Sequence[str]) -> dict[str, str]:
        pipe = self.wait_client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.xrevrange(job_stream(job_id), count=1)
        newest = pipe.execute()
        return {
            job_id: _text(entries[0][0]) if entries else START
            for job_id, entries in zip(job_ids, newest, strict=True)
        }

    def read_many(self, after: dict[str, str], block_ms: int) -> list[tuple[str, Event]]:
        if not after:
            return []
        block = block_ms if block_ms > 0 else None
        streams = {job_stream(job_id): cursor for job_id, cursor in after.items()}
        found = self.wait_client.xread(streams, count=500, block=block)  # type: ignore[arg-type]
        prefix = len(job_stream(""))
        return [
            (_text(stream)[prefix:], event)
            for stream, entries in found or []
            for event in _events(entries)
        ]

    def expire(self, job_id: str) -> None:
        try:
            self.client.expire(job_stream(job_id), self.finished_ttl_s)
        except (RedisError, OSError) as exc:
            log.warning("stream of job %s has no TTL: %s", job_id, exc)


class NullEventBus:
    """For contexts that publish nothing live (one-off scripts)."""

    def __init__(self) -> None:
        self.slots = Slots()

    def publish(
        self, job_id: str, type_: str, data: dict[str, Any], *, final: bool = False
    ) -> None:
        pass

    def publish_many(
        self, job_id: str, type_: str, items: list[dict[str, Any]], *, final: bool = False
    ) -> None:
        pass

    def read(self, job_id: str, after: str, block_ms: int) -> list[Event]:
        return []

    def expire(self, job_id: str) -> None:
        pass

    def last_ids(self, job_ids: Sequence[str]) -> dict[str, str]:
        return dict.fromkeys(job_ids, START)

    def read_many(self, after: dict[str, str], block_ms: int) -> list[tuple[str, Event]]:
        # No event will ever come: a short nap, and the waiter reads the database again.
        time.sleep(min(block_ms, NULL_BUS_NAP_MS) / 1000)
        return []


def _events(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Event]:
    return [
        Event(id=_text(entry_id), type=_text(fields[b"type"]), data=json.loads(fields[b"data"]))
        for entry_id, fields in entries
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
