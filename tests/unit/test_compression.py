"""Large jobs on the wire: gzip request bodies (with the size limit applied to
the inflated body), gzip answers, the client's streamed map body, and results
read in pages that touch only the chunks they overlap."""

from __future__ import annotations

import gzip
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text as sql

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.client.http import _gzipped, _spec_with_items
from jobsys.context import Context
from jobsys.errors import SpecError
from jobsys.states import JobStatus
from tests.support.auth import bearer
from webui import create_app
from webui.compression import MIN_SIZE

DEV = Principal("dev", "developer")
FILLER_STEP = {"kind": "function", "function": "math:sqrt", "items": [1]}


@pytest.fixture
def client(ctx: Context) -> FlaskClient:
    return create_app(context=ctx).test_client()


def post_gzip(client: FlaskClient, ctx: Context, body: bytes, **headers: str) -> object:
    return client.post(
        "/api/jobs",
        data=body,
        headers={
            **bearer(ctx),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            **headers,
        },
    )


def test_gzip_bodies_in_and_out(ctx: Context, client: FlaskClient) -> None:
    spec = {"name": "big", "tags": ["gz"]}
    step = {"kind": "function", "function": "math:sqrt", "chunk_size": 500}
    body = b"".join(_gzipped(_spec_with_items(spec, step, range(20_000))))
    created = post_gzip(client, ctx, body)
    assert created.status_code == 202, created.get_json()
    job = created.get_json()
    assert job["steps"][0]["items"]["total"] == 20_000 and job["tags"] == ["gz"]

    # The answer is made large on purpose: twenty more jobs put the list well
    # over the threshold, so the gzip checks below run unconditionally.
    for n in range(20):
        service.submit_job(ctx, DEV, {"name": f"filler-{n}", "steps": [FILLER_STEP]})
    plain = client.get("/api/jobs?per_page=100", headers=bearer(ctx))
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers  # no Accept-Encoding: sent as it is
    assert len(plain.data) >= 3 * MIN_SIZE
    listed = client.get(
        "/api/jobs?per_page=100", headers={**bearer(ctx), "Accept-Encoding": "gzip"}
    )
    assert listed.status_code == 200
    assert listed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in listed.headers["Vary"]
    assert len(listed.data) < len(plain.data)
    assert gzip.decompress(listed.data) == plain.data  # the round trip, byte for byte

    small = client.get("/api/stats", headers={**bearer(ctx), "Accept-Encoding": "gzip"})
    assert small.status_code == 200 and len(small.data) < MIN_SIZE
    assert "Content-Encoding" not in small.headers  # too small to be worth it


def test_bad_gzip_bodies_are_refused_and_change_nothing(
    ctx: Context, client: FlaskClient, dispatcher: MemoryDispatcher
) -> None:
    limit = ctx.settings.max_payload_bytes
    bomb = gzip.compress(b"[" + b" " * (limit + 10) + b"]")
    assert len(bomb) < limit // 100  # small on the wire, over the limit inflated
    answers = [
        (post_gzip(client, ctx, bomb), 413, "inflated"),
        (post_gzip(client, ctx, b"not gzip at all"), 400, "damaged"),
        (post_gzip(client, ctx, gzip.compress(b'{"name": "x"}')[:-8]), 400, "cut short"),
        (post_gzip(client, ctx, b"{}", **{"Content-Encoding": "br"}), 400, "not supported"),
    ]
    for answer, status, text in answers:
        assert answer.status_code == status, answer.get_json()  # type: ignore[attr-defined]
        assert text in json.dumps(answer.get_json())  # type: ignore[attr-defined]
    assert service.list_jobs(ctx, DEV).total == 0 and dispatcher.published == []


def test_results_in_pages(ctx: Context, dispatcher: MemoryDispatcher) -> None:
    """Ten items in chunks of three (0-2, 3-5, 6-8, 9): a page reads the outcomes
    of the chunks it overlaps and of no other."""
    spec = {
        "name": "paged",
        "steps": [
            {"kind": "function", "function": "math:sqrt", "items": list(range(10)), "chunk_size": 3}
        ],
    }
    job = service.submit_job(ctx, DEV, spec)
    plan = dispatcher.published[0]
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        values = [{"ok": True, "value": i} for i in range(chunk.start, chunk.stop)]
        service.finish_task(ctx, chunk.task_id, ok=True, results=values, failed_items=0)
    assert service.gather_function_step(ctx, plan.step_id) is JobStatus.COMPLETED

    with ctx.sessions() as session:
        stored = dict(
            session.execute(
                sql("SELECT chunk_index, results FROM task_runs WHERE step_id = :s"),
                {"s": plan.step_id},
            ).all()
        )

    def page(offset: int, limit: int, chunks: list[int]) -> list[int]:
        """The page's values, read while every chunk but ``chunks`` holds
        outcomes that cannot be decoded: reading one of those fails the page."""
        with ctx.sessions.begin() as session:
            for index, raw in stored.items():
                session.execute(
                    sql(
                        "UPDATE task_runs SET results = :r WHERE step_id = :s AND chunk_index = :i"
                    ),
                    {"r": raw if index in chunks else "{not json", "s": plan.step_id, "i": index},
                )
        found = service.job_results(ctx, DEV, job.id, offset=offset, limit=limit)
        assert found["total"] == 10 and found["offset"] == offset
        return [r["value"] for r in found["results"]]

    with pytest.raises(ValueError):  # the decoy works: an undecodable chunk fails its page
        page(0, 3, [])
    assert page(0, 1000, [0, 1, 2, 3]) == list(range(10))
    assert page(2, 5, [0, 1, 2]) == [2, 3, 4, 5, 6]  # across three chunks
    assert page(3, 3, [1]) == [3, 4, 5]  # exactly one chunk
    assert page(8, 100, [2, 3]) == [8, 9]
    assert page(10, 5, []) == []
    for bad in ({"offset": -1, "limit": 10}, {"offset": 0, "limit": 0}):
        with pytest.raises(SpecError):
            service.job_results(ctx, DEV, job.id, **bad)  # type: ignore[arg-type]
