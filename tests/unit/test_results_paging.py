"""Result reads are bounded (issue 14, item 10): the API answers pages with
``next_offset``, the client follows it, the job page reads only the outcomes it
shows, and the JSON download is streamed a page at a time."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response
from sqlalchemy import event, literal_column, update

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.client import http as client_module
from jobsys.client.http import Client
from jobsys.context import Context
from jobsys.envelope import ok
from jobsys.service import jobs as jobs_module
from jobsys.signing import Binding, Purpose
from jobsys.store.models import Job, Step, TaskRun
from tests.support.auth import bearer_of, new_token, sign_in

DEV = Principal("dev", "developer")


def finished_job(
    ctx: Context, dispatcher: MemoryDispatcher, n: int, chunk_size: int, *, pickled: bool = False
) -> str:
    """A completed function job of ``n`` items whose value is the item's index
    (as a tuple, which travels pickled and signed, with ``pickled``)."""
    step = {"kind": "function", "function": "builtins:abs", "items": list(range(n))}
    job = service.submit_job(
        ctx, DEV, {"name": "big", "steps": [{**step, "chunk_size": chunk_size}]}
    )
    plan = dispatcher.published[-1]
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        values = [
            ok((i,), ctx.signer, Binding(Purpose.RESULT, job.id, plan.step_id))
            if pickled
            else {"ok": True, "value": i}
            for i in range(chunk.start, chunk.stop)
        ]
        service.finish_task(ctx, chunk.task_id, ok=True, results=values, failed_items=0)
    service.gather_function_step(ctx, plan.step_id)
    return job.id


def test_the_api_answers_pages_with_a_default_a_maximum_and_next_offset(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask
) -> None:
    job_id = finished_job(ctx, dispatcher, 2_500, 500)
    http = app.test_client()
    headers = bearer_of(new_token(ctx, name="dev"))

    first = http.get(f"/api/jobs/{job_id}/results", headers=headers).json
    assert (first["offset"], first["limit"], first["total"], first["next_offset"]) == (
        0,
        1_000,
        2_500,
        1_000,
    )
    assert [r["value"] for r in first["results"]] == list(range(1_000))

    last = http.get(f"/api/jobs/{job_id}/results?offset=2000", headers=headers).json
    assert len(last["results"]) == 500 and last["next_offset"] is None
    past = http.get(f"/api/jobs/{job_id}/results?offset=9000", headers=headers).json
    assert past["results"] == [] and past["next_offset"] is None

    whole = http.get(f"/api/jobs/{job_id}/results?limit=20000", headers=headers).json
    assert len(whole["results"]) == 2_500 and whole["next_offset"] is None
    too_many = http.get(f"/api/jobs/{job_id}/results?limit=20001", headers=headers)
    assert too_many.status_code == 400 and "20,000" in too_many.json["fields"]["limit"]
    assert http.get(f"/api/jobs/{job_id}/results?limit=0", headers=headers).status_code == 400


def test_the_client_follows_next_offset_across_pages(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finished_job(ctx, dispatcher, 2_500, 500)
    monkeypatch.setattr(client_module, "RESULTS_PAGE", 1_000)
    asked: list[str] = []

    def log_request(request: httpx.Request) -> None:
        asked.append(str(request.url.params))

    with Client(
        "http://jobsys.test", new_token(ctx, name="dev"), transport=httpx.WSGITransport(app=app)
    ) as c:
        c._http.event_hooks["request"].append(log_request)
        job = c.job(job_id)
        asked.clear()
        assert job.results() == list(range(2_500))
        assert asked == ["offset=0&limit=1000", "offset=1000&limit=1000", "offset=2000&limit=1000"]
        assert list(job.iter_results()) == list(range(2_500))


def test_the_job_page_reads_and_verifies_only_what_it_shows(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 pickled results in 100 chunks of 50: the page shows 100 of them, so it
    may read the outcomes of 2 chunks and check 100 signatures, not all of them."""
    job_id = finished_job(ctx, dispatcher, 5_000, 50, pickled=True)
    http = app.test_client()
    sign_in(http, new_token(ctx, name="dev"))

    # Every chunk past the first two holds outcomes that cannot be decoded:
    # reading any of them (for the page, or the task table) fails the page.
    with ctx.sessions.begin() as session:
        session.execute(
            update(TaskRun)
            .where(TaskRun.job_id == job_id, TaskRun.chunk_index >= 2)
            .values(results=literal_column("'{not json'"))
        )
    with pytest.raises(ValueError):  # the decoy works
        service.job_results(ctx, DEV, job_id, offset=100, limit=1)

    verified = 0
    real_unsign = jobs_module.unsign_for_wire

    def counting_unsign(obj: Any, signer: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal verified
        verified += 1
        return real_unsign(obj, signer, *args, **kwargs)

    monkeypatch.setattr(jobs_module, "unsign_for_wire", counting_unsign)
    page = http.get(f"/jobs/{job_id}")
    assert page.status_code == 200  # not the other 98 chunks (nor for the task table)
    assert verified == 100
    html = page.get_data(as_text=True)
    assert "(99,)" in html and "(100,)" not in html
    assert "First 100 of 5000 shown" in html


def test_the_download_is_streamed_a_page_at_a_time_and_complete(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finished_job(ctx, dispatcher, 2_500, 500, pickled=True)
    answered: list[Response] = []

    @app.after_request
    def keep(response: Response) -> Response:
        answered.append(response)
        return response

    http = app.test_client()
    sign_in(http, new_token(ctx, name="dev"))

    pages_read = 0
    real_outcomes = jobs_module._outcomes

    def counting_outcomes(*args: Any) -> list[dict[str, Any]]:
        nonlocal pages_read
        pages_read += 1
        return real_outcomes(*args)

    monkeypatch.setattr(jobs_module, "_outcomes", counting_outcomes)
    # A browser asks for gzip: the answer must still stream, not be buffered to compress it.
    response = http.get(
        f"/jobs/{job_id}/results.json", headers={"Accept-Encoding": "gzip"}, buffered=False
    )
    assert response.status_code == 200
    assert answered[-1].is_streamed  # a generator, not one body built in memory
    assert "attachment" in response.headers["Content-Disposition"]
    assert pages_read == 0  # nothing read until the body is

    body: Iterator[bytes] = iter(response.response)
    pieces = list(body)
    response.close()
    assert pages_read == 3  # 2,500 outcomes in pages of 1,000
    raw = b"".join(pieces)
    if response.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    found = json.loads(raw)
    assert (found["job_id"], found["total"], found["failed"]) == (job_id, 2_500, 0)
    assert len(found["results"]) == 2_500
    assert [r["value"]["repr"] for r in found["results"][:3]] == ["(0,)", "(1,)", "(2,)"]
    assert found["results"][-1]["value"]["repr"] == "(2499,)"
    assert all(r["ok"] and "$pickle" in r["value"] for r in found["results"])


def test_a_page_loads_neither_the_job_nor_the_step_with_its_spec(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    """A function step's spec holds every item: a page of 10 outcomes of a job
    of 2,000 items must not decode it (nor the job's), only the columns it needs."""
    job_id = finished_job(ctx, dispatcher, 2_000, 1_000)
    loaded: list[str] = []

    def on_load(target: Any, _context: Any) -> None:
        loaded.append(type(target).__name__)

    event.listen(Step, "load", on_load)
    event.listen(Job, "load", on_load)
    try:
        page = service.job_results(ctx, DEV, job_id, offset=0, limit=10)
    finally:
        event.remove(Step, "load", on_load)
        event.remove(Job, "load", on_load)
    assert [r["value"] for r in page["results"]] == list(range(10))
    assert page["total"] == 2_000
    assert loaded == []


def test_reading_sessions_share_one_option_engine(ctx: Context) -> None:
    """Made once per factory, not once per request."""
    with ctx.sessions.reading() as one, ctx.sessions.reading() as two:
        assert one.bind is two.bind
        assert one.bind is not ctx.sessions.kw["bind"]  # still the read-only options
