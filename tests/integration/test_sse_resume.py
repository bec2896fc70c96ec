"""SSE resume with ``Last-Event-ID`` while the job is still running, on the live
stack (README: "reconnect with Last-Event-ID and go on after the last event, so
nothing is missed or repeated"): a follower that drops the stream mid-job and
comes back gets exactly the events after the last one it saw, the ones written
while it was away included, and the stream ends with the job."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import redis

from jobsys.broker.events import job_stream
from tests.support.live import LiveStack, wait_until

pytestmark = pytest.mark.integration

ITEMS = 20


def chatty(x: int) -> int:
    print(f"working on {x}")
    time.sleep(0.5)
    return x


def sse_events(response: httpx.Response) -> Any:
    """Each event of an SSE body as {"id", "event", "data"}; comments and the
    ``retry`` field are skipped."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if "event" in fields or "data" in fields:
                yield {
                    "id": fields.get("id"),
                    "event": fields.get("event", "message"),
                    "data": json.loads(fields.get("data", "null")),
                }
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def lines_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["line"] for e in events if e["event"] == "log"]


def test_a_follower_resumes_after_its_last_event_while_the_job_runs(stack: LiveStack) -> None:
    with stack.client() as c, stack.http(role="viewer") as http:
        job = c.map(chatty, range(ITEMS), chunk_size=ITEMS)  # one chunk: lines 0.5 s apart
        path = f"/api/jobs/{job.id}/events"

        before: list[dict[str, Any]] = []
        with http.stream("GET", path) as response:
            assert response.status_code == 200
            for event in sse_events(response):
                before.append(event)
                if len(lines_of(before)) == 3:
                    break  # and hang up mid-stream
        last_id = before[-1]["id"]
        assert before[-1]["event"] == "log" and last_id

        # While away, the job goes on writing: wait until it wrote two more lines.
        store: redis.Redis = stack.ctx.events.client  # type: ignore[attr-defined]
        wait_until(
            lambda: len(store.xrange(job_stream(job.id), f"({last_id}")) >= 2,
            30,
            "events written while the follower was away",
        )
        missed = [_text(i) for i, _f in store.xrange(job_stream(job.id), f"({last_id}")]
        assert c.job(job.id).status == "running"  # resumed while the job still runs

        with http.stream("GET", path, headers={"Last-Event-ID": last_id}) as response:
            assert response.status_code == 200
            after = list(sse_events(response))
        final_status = c.job(job.id).status

    assert after[-1]["event"] == "end"  # the stream ends with the job, not "reconnect"
    after = after[:-1]
    assert after[-1]["event"] == "status" and after[-1]["data"]["status"] == "completed"
    assert final_status == "completed"
    # Exactly the events after the last one seen: the ones written while away
    # first, then the rest; together the job's whole stream, each event once.
    resumed_ids = [e["id"] for e in after]
    assert resumed_ids[: len(missed)] == missed
    stored = [_text(i) for i, _f in store.xrange(job_stream(job.id))]
    assert [e["id"] for e in before] + resumed_ids == stored
    assert lines_of(before) + lines_of(after) == [
        f"[items 0-{ITEMS - 1}] working on {x}" for x in range(ITEMS)
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
