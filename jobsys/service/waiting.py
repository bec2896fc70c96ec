"""Waiting for jobs to end without polling: a long-poll driven by the jobs' event streams.

``GET /api/jobs/<id>?wait=S`` and ``POST /api/jobs/wait`` hold their request
until a job ends (or S seconds pass), so a client learns of the end as soon
as the worker reports it instead of on its next poll. The order of the steps
is what makes this safe:

1. take each job's newest event id (``EventBus.last_ids``);
2. read the jobs' status from the database, and answer at once if one ended;
3. block reading the streams *after* those ids (one ``XREAD`` over them all).

An end committed before step 2 is seen by step 2; one committed after it is
published after step 1 (``service.progress`` publishes a job's final status
after its commit, from ``finish_job`` and ``cancel_job``), so step 3 sees its
event. An event only says "look": the database, read again, is the answer.
Between reads (at most ``WAIT_BLOCK_MS``) the waiter renews its slot and reads
the database anyway, in case an event was lost (a Redis restart).

While Redis is unreachable the waiter reads the database every ``POLL_S``
and tries Redis again every ``REDIS_RETRY_S``: a caller never fails for
Redis's sake. A waiting request holds a web thread, so it holds a slot of the
live pool (``service.stream_slots``) while it blocks; a full pool is a
TooManyStreams (429). A job found ended at the first look takes no slot.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import bindparam, select

from jobsys.auth import Principal, Right, require_somewhere
from jobsys.broker.events import WAIT_BLOCK_MS, Event
from jobsys.context import Context
from jobsys.errors import NotFoundError, SpecError
from jobsys.service.jobs import RESULTS_PAGE, check_page, job_results, read_job_infos
from jobsys.service.records import JobInfo
from jobsys.service.stream_slots import acquire_slot
from jobsys.states import FINISHED, JobStatus
from jobsys.store.models import Job

log = logging.getLogger(__name__)

#: The longest one request may wait, in seconds (kept under common proxy timeouts).
MAX_WAIT_S = 60.0
#: The most jobs one ``wait_for_jobs`` call follows.
MAX_WAIT_JOBS = 1_000
#: A job id is 32 hex digits; anything much longer is not one (and is not echoed whole).
MAX_ID_LENGTH = 64
#: Seconds between database reads while Redis is unreachable.
POLL_S = 0.2
#: Seconds between attempts to reach Redis again while it is unreachable.
REDIS_RETRY_S = 2.0
#: Ids per ``IN (...)`` query: SQLite refuses more than 999 parameters in older builds.
_ID_BATCH = 500

_ENDED = [s.value for s in FINISHED]


@dataclass(frozen=True)
class Waited:
    """What a wait for several jobs found: those that ended (each as it is now),
    the ids still queued or running, and the ids no job has (never, or purged)."""

    ended: tuple[JobInfo, ...]
    open: tuple[str, ...]
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ended": [job.to_dict() for job in self.ended],
            "open": list(self.open),
            "missing": list(self.missing),
        }


def parse_wait_s(value: Any, field: str) -> float:
    """``value`` as seconds to wait (0 < S <= 60), from a query string or JSON;
    else a SpecError naming ``field``."""
    seconds: float | None = None
    if isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            seconds = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_WAIT_S:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise SpecError(
            {
                field: f"give the seconds to wait as a number above 0 and at most "
                f"{MAX_WAIT_S:g} (e.g. 30), not {shown}; wait again for longer"
            }
        )
    return seconds


def wait_for_job(ctx: Context, principal: Principal, job_id: str, timeout_s: Any) -> JobInfo:
    """The job as soon as it has ended, or as it is after ``timeout_s`` seconds
    (checked: 0 < timeout_s <= 60). NotFoundError when there is no such job."""
    require_somewhere(principal, Right.VIEW)
    timeout_s = parse_wait_s(timeout_s, "wait")
    seen: list[JobInfo] = []

    def look(ctx: Context, principal: Principal, ids: list[str]) -> dict[str, str]:
        # One read is both the check and the answer: the whole job, not only its status.
        seen[:] = _job_infos(ctx, principal, ids)
        return {info.id: info.status for info in seen}

    _wait(ctx, principal, [job_id], timeout_s, look)
    if not seen:
        raise NotFoundError(f"no job with id {job_id!r}")
    return seen[0]


def wait_for_results(
    ctx: Context,
    principal: Principal,
    job_id: str,
    timeout_s: Any,
    *,
    offset: int = 0,
    limit: int = RESULTS_PAGE,
) -> dict[str, Any]:
    """A wait for the job to end and its first page of results in one request.

    Once the job has ended: the page ``job_results`` gives, with ``"ended": true``.
    At the deadline with the job still open: ``{"job_id", "ended": false, "job"}``,
    the job as it is now and no ``results`` (ask again). A submit-to-result call
    then costs one request where ``?wait`` then ``/results`` cost two. The page's
    bounds are checked before any wait, so bad input is refused at once."""
    require_somewhere(principal, Right.VIEW)
    timeout_s = parse_wait_s(timeout_s, "wait")
    check_page(offset, limit)
    statuses = _wait(ctx, principal, [job_id], timeout_s, _statuses)
    if job_id not in statuses:
        raise NotFoundError(f"no job with id {job_id!r}")
    if statuses[job_id] in _ENDED:
        return {**job_results(ctx, principal, job_id, offset=offset, limit=limit), "ended": True}
    infos = _job_infos(ctx, principal, [job_id])
    if not infos:  # purged since the last look
        raise NotFoundError(f"no job with id {job_id!r}")
    return {"job_id": job_id, "ended": False, "job": infos[0].to_dict()}


def wait_for_jobs(
    ctx: Context, principal: Principal, job_ids: Sequence[Any], timeout_s: Any
) -> Waited:
    """Answer as soon as at least one of ``job_ids`` has ended (or has no job),
    or after ``timeout_s`` seconds, with every id sorted into ended, open and
    missing. Ids are checked (text, 1 to 1,000 of them; repeats count once)."""
    require_somewhere(principal, Right.VIEW)
    ids = _parse_ids(job_ids)
    timeout_s = parse_wait_s(timeout_s, "timeout_s")
    statuses = _wait(ctx, principal, ids, timeout_s, _statuses)
    ended = [i for i in ids if statuses.get(i) in _ENDED]
    infos = {info.id: info for info in _job_infos(ctx, principal, ended)}
    return Waited(
        ended=tuple(infos[i] for i in ended if i in infos),
        open=tuple(i for i in ids if i in statuses and statuses[i] not in _ENDED),
        # One purged between the two reads counts as missing too.
        missing=tuple(i for i in ids if i not in statuses or (i in ended and i not in infos)),
    )


def _parse_ids(job_ids: Any) -> list[str]:
    if not isinstance(job_ids, list | tuple) or not job_ids:
        raise SpecError({"ids": "give a list of job ids (JSON strings), at least one"})
    if len(job_ids) > MAX_WAIT_JOBS:
        raise SpecError(
            {
                "ids": f"give at most {MAX_WAIT_JOBS:,} job ids, not {len(job_ids):,}; "
                "wait for the rest in another request"
            }
        )
    for i, job_id in enumerate(job_ids):
        if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_ID_LENGTH:
            raise SpecError({f"ids[{i}]": "give a job id (a JSON string of 1 to 64 characters)"})
    return list(dict.fromkeys(job_ids))


def _wait(
    ctx: Context,
    principal: Principal,
    ids: list[str],
    timeout_s: float,
    look: Callable[[Context, Principal, list[str]], dict[str, str]],
) -> dict[str, str]:
    """Each id's status as ``look`` reads it from the database (unknown ids, and
    those of jobs the principal may not see, left out), once one has ended or
    gone, or at the deadline."""
    deadline = time.monotonic() + timeout_s
    cursors = _last_ids(ctx, ids)  # before the database read: see the module's docstring
    statuses = look(ctx, principal, ids)
    if _answered(ids, statuses):
        return statuses
    with acquire_slot(ctx, principal) as slot:
        retry_redis_at = time.monotonic() + REDIS_RETRY_S
        while True:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return look(ctx, principal, ids)  # as they are now, not at the last look
            slot.renew()
            if cursors is None:
                # Redis is away: read the database a few times a second instead.
                time.sleep(min(POLL_S, left_s))
                if time.monotonic() >= retry_redis_at:
                    retry_redis_at = time.monotonic() + REDIS_RETRY_S
                    cursors = _last_ids(ctx, ids)
                news = True
            else:
                news, cursors = _read(ctx, ids, statuses, cursors, left_s)
            if news:
                statuses = look(ctx, principal, ids)
                if _answered(ids, statuses):
                    return statuses


def _read(
    ctx: Context,
    ids: list[str],
    statuses: dict[str, str],
    cursors: dict[str, str],
    left_s: float,
) -> tuple[bool, dict[str, str] | None]:
    """One blocking read of the open jobs' streams: whether there is news to
    look for in the database now, and the cursors to read after next (None: Redis is away)."""
    after = {i: cursors[i] for i in ids if i in statuses}
    # block_ms=0 would mean "do not wait": at least 1 ms.
    block_ms = max(1, int(min(WAIT_BLOCK_MS, left_s * 1000)))
    try:
        news = ctx.events.read_many(after, block_ms)
    except (RedisError, OSError) as exc:
        log.warning("waiting on %d jobs without their events (Redis: %s)", len(ids), exc)
        return True, None
    for job_id, event in news:
        cursors[job_id] = event.id
    # Nothing within the block: look anyway, in case an end's event was lost.
    return (not news or any(_may_end(event) for _job_id, event in news)), cursors


def _may_end(event: Event) -> bool:
    """Whether ``event`` may tell of a job's end (a status event; an odd one counts)."""
    if event.type != "status":
        return False
    try:
        return JobStatus(event.data["status"]).finished
    except (KeyError, TypeError, ValueError):
        return True


def _last_ids(ctx: Context, ids: list[str]) -> dict[str, str] | None:
    try:
        return ctx.events.last_ids(ids)
    except (RedisError, OSError) as exc:
        log.warning("waiting on %d jobs by reading the database (Redis: %s)", len(ids), exc)
        return None


def _answered(ids: list[str], statuses: dict[str, str]) -> bool:
    return any(i not in statuses or statuses[i] in _ENDED for i in ids)


#: Built once, as ``jobs.read_job_infos``'s reads are: every look runs it.
_STATUSES = select(Job.id, Job.status, Job.project).where(
    Job.id.in_(bindparam("b_ids", expanding=True))
)


def _statuses(ctx: Context, principal: Principal, ids: list[str]) -> dict[str, str]:
    """The statuses of the jobs of ``ids`` the principal may see."""
    found: dict[str, str] = {}
    with ctx.sessions.reading_connection() as conn:
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            rows = conn.execute(_STATUSES, {"b_ids": batch})
            found.update(
                (row.id, row.status) for row in rows if principal.can(Right.VIEW, row.project)
            )
    return found


def _job_infos(ctx: Context, principal: Principal, ids: list[str]) -> list[JobInfo]:
    """The jobs of ``ids`` the principal may see."""
    infos: list[JobInfo] = []
    with ctx.sessions.reading_connection() as conn:
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            infos.extend(
                i for i in read_job_infos(conn, batch) if principal.can(Right.VIEW, i.project)
            )
    return infos
