"""Idempotency keys: a request sent again with the same ``Idempotency-Key`` gets
the job its first sending made, for a day, instead of a second job.

A client whose submit timed out cannot know whether it arrived; with a key it
may simply send it again. The key's row is written in the same transaction as
the job, and the unique (principal, key) pair settles a race between two
repeats: one commits, the other rolls back (its job with it) and hands back the
winner's job. A key belongs to its caller (two callers may pick the same one)
and to the request it first came with: the same key with another body or route
is refused with 422, as Stripe and the IETF Idempotency-Key draft do.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobsys.auth import Principal
from jobsys.context import Context
from jobsys.errors import IdempotencyMismatch, SpecError
from jobsys.store.inserts import insert_rows, job_rows
from jobsys.store.models import Base, IdempotencyKey, Job, utcnow

HEADER = "Idempotency-Key"
#: How long a key names its job; older rows are ignored, then swept (``retention``).
WINDOW = timedelta(hours=24)
#: Visible ASCII, as a header carries it: a UUID, a hash, a client's own counter.
KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Idempotency:
    """A caller's key for one request and the fingerprint of that request."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, target: str, body: Any) -> Idempotency:
        """``target`` names the route (``POST /api/jobs``): one key, one kind of request."""
        key = key.strip()
        if not KEY.match(key):
            raise SpecError(
                {HEADER: "give 1 to 255 visible ASCII characters, such as a new UUID per request"}
            )
        return cls(key, fingerprint(target, body))


def fingerprint(target: str, body: Any) -> str:
    """sha256 of the route and the body as canonical JSON (sorted keys, no spaces),
    so the same request written with other spacing or key order still matches."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{target}\n{canonical}".encode()).hexdigest()


def store_job(
    ctx: Context,
    principal: Principal,
    job: Job,
    once: Idempotency | None,
    *,
    alongside: Sequence[Base] = (),
) -> str | None:
    """Commit a new job, with ``once``'s key when given; None when it was stored.
    For a repeat of an earlier request nothing is stored, and the id of the job
    that request made is returned instead.

    ``alongside`` are more new rows for the job's transaction (its first step's
    task rows, its audit entry): they commit with the job, or not at all when
    it is a repeat."""
    if once is None:
        with ctx.sessions.begin() as session:
            insert_rows(session, [*job_rows(job), *alongside])
        return None
    try:
        with ctx.sessions.begin() as session:
            earlier = _earlier_job(session, principal.name, once)
            if earlier is not None:
                return earlier
            key = IdempotencyKey(
                principal=principal.name,
                key=once.key,
                fingerprint=once.fingerprint,
                job_id=job.id,
                created_at=utcnow(),
            )
            insert_rows(session, [*job_rows(job), key, *alongside])
    except IntegrityError:
        # A repeat running alongside committed first. Only PostgreSQL gets here:
        # SQLite's BEGIN IMMEDIATE queues the two, and the second finds the row.
        with ctx.sessions() as session:
            earlier = _earlier_job(session, principal.name, once)
        if earlier is None:
            raise
        return earlier
    return None


def _earlier_job(session: Session, principal: str, once: Idempotency) -> str | None:
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.principal == principal, IdempotencyKey.key == once.key
        )
    )
    if row is None:
        return None
    if row.created_at < utcnow() - WINDOW:
        # Expired, not yet swept: the key is free to name a new request. A plain
        # DELETE, since a racing repeat may have removed the row already.
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id))
        return None
    if row.fingerprint != once.fingerprint:
        raise IdempotencyMismatch(
            {
                HEADER: f"{once.key!r} was sent at {row.created_at:%Y-%m-%d %H:%M:%S} UTC with "
                f"another request (it made job {row.job_id}); send that same request again "
                "to get that job, or use a new key for a new request"
            }
        )
    return row.job_id
