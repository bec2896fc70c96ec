"""The job list: filters, search, sort, pages, bulk cancel, and query plans
that use an index for every filter (SQLite's EXPLAIN QUERY PLAN)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.context import Context
from jobsys.errors import SpecError
from jobsys.service import job_list
from jobsys.service.job_list import JobFilter, page_query
from jobsys.service.records import Page
from jobsys.store.models import Job, JobTag
from tests.support.specs import docker_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def seeded(ctx: Context) -> list[str]:
    ids = []
    for i, (name, owner) in enumerate(
        [("nightly-etl", "ann"), ("nightly-report", "bob"), ("adhoc", "ann"), ("backfill", "cy")]
    ):
        job = service.submit_job(
            ctx, Principal(owner, "developer"), {**docker_spec(), "name": name}
        )
        with ctx.sessions.begin() as s:
            s.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(created_at=T0 + timedelta(hours=i), status="failed" if i == 1 else "queued")
            )
        ids.append(job.id)
    return ids


def names(ctx: Context, **args: str) -> list[str]:
    page = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse(args))
    return [j.name for j in page.items]


def test_filters_search_and_sort(ctx: Context, seeded: list[str]) -> None:
    assert names(ctx) == ["backfill", "adhoc", "nightly-report", "nightly-etl"]
    assert names(ctx, sort="created")[0] == "nightly-etl"
    assert names(ctx, sort="name") == ["adhoc", "backfill", "nightly-etl", "nightly-report"]
    assert names(ctx, owner="ann") == ["adhoc", "nightly-etl"]
    assert names(ctx, status="failed") == ["nightly-report"]
    assert names(ctx, q="nightly") == ["nightly-report", "nightly-etl"]
    assert names(ctx, q=seeded[2]) == ["adhoc"]
    assert names(ctx, since="2026-01-01T01:00", until="2026-01-01T03:00") == [
        "adhoc",
        "nightly-report",
    ]
    with pytest.raises(SpecError) as caught:
        JobFilter.parse({"since": "last week", "sort": "random", "status": "sleepy"})
    assert set(caught.value.fields) == {"since", "sort", "status"}
    page = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse({"q": "nightly"}), per_page=1)
    assert page.total == 2 and len(page.items) == 1


def test_the_total_is_exact_up_to_the_cap_then_more_than(
    ctx: Context, seeded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past COUNT_CAP (or the page asked for) the count stops: "more than"."""
    monkeypatch.setattr(job_list, "COUNT_CAP", 2)

    def page(number: int, **args: str) -> Page:
        where = JobFilter.parse(args)
        return service.list_jobs(ctx, SYSTEM, where=where, page=number, per_page=1)

    first = page(1)
    assert (first.total, first.total_exact, first.pages) == (2, False, 3)
    assert first.to_dict()["total_exact"] is False and [j.name for j in first.items] == ["backfill"]
    third = page(3)  # counted to the end of the page asked for, and one past it
    assert (third.total, third.total_exact, [j.name for j in third.items]) == (
        3,
        False,
        ["nightly-report"],
    )
    last = page(4)
    assert (last.total, last.total_exact, last.pages) == (4, True, 4)
    assert [j.name for j in last.items] == ["nightly-etl"]
    past = page(5)
    assert (past.total, past.total_exact, past.items) == (4, True, ())
    assert (page(1, owner="ann").total, page(1, owner="ann").total_exact) == (2, True)


def test_a_tag_count_counts_only_that_tag_and_time(ctx: Context) -> None:
    """The tag's own index rows are counted, without the jobs table."""
    dev = Principal("dev", "developer")
    for tags in (["nightly"], ["nightly", "team=data"], ["team=data"], []):
        service.submit_job(ctx, dev, {**docker_spec(), "tags": tags})
    with ctx.sessions.begin() as s:
        s.execute(update(Job).values(created_at=T0))
        s.execute(update(JobTag).values(created_at=T0))
    later = service.submit_job(ctx, dev, {**docker_spec(), "tags": ["nightly"]})

    def total(**args: str) -> int:
        return service.list_jobs(ctx, SYSTEM, where=JobFilter.parse(args)).total

    assert (total(tag="nightly"), total(tag="team=data"), total(tag="none")) == (3, 2, 0)
    assert total(tag="nightly", since="2026-01-02") == 1
    assert total(tag="nightly", until="2026-01-02") == 2
    assert total(tag="nightly", status="queued") == 3
    with ctx.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == later.id).values(status="failed"))
    assert total(tag="nightly", status="queued") == 2


def test_every_filter_uses_an_index(ctx: Context) -> None:
    engine = ctx.sessions.kw["bind"]
    since = T0
    filters = [
        JobFilter(),
        JobFilter(status="failed"),
        JobFilter(owner="ann"),
        JobFilter(template="echo"),
        JobFilter(since=since),
        JobFilter(q="nightly"),
        JobFilter(sort="name"),
        JobFilter(sort="-finished"),
        JobFilter(tag="nightly"),
        JobFilter(tag="nightly", status="failed", since=since),
    ]
    for where in filters:
        compiled = page_query(where, 3, 25).compile(dialect=engine.dialect)
        params = tuple(compiled.params[k] for k in compiled.positiontup or ())
        with engine.connect() as conn:
            plan = " | ".join(
                str(row[-1])
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
            )
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (where, plan)
        assert "SCAN jobs" not in plan or "USING" in plan.split("SCAN jobs")[1][:30], plan
        if where.q is None:  # an id-or-name search sorts its (few) matches
            assert "TEMP B-TREE" not in plan, (where, plan)


def test_tags_are_checked_stored_filtered_and_kept_by_reruns(ctx: Context) -> None:
    dev = Principal("dev", "developer")
    tagged = service.submit_job(ctx, dev, {**docker_spec(), "tags": ["nightly", "team=data"]})
    service.submit_job(ctx, dev, {**docker_spec(), "tags": ["adhoc"]})
    service.submit_job(ctx, dev, docker_spec())
    assert tagged.tags == ("nightly", "team=data")
    assert tagged.to_dict()["tags"] == ["nightly", "team=data"]
    assert [
        j.id for j in service.list_jobs(ctx, SYSTEM, where=JobFilter(tag="team=data")).items
    ] == [tagged.id]
    again = service.rerun_job(ctx, dev, tagged.id)
    found = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse({"tag": "nightly"}))
    assert {j.id for j in found.items} == {tagged.id, again.id}
    assert service.list_jobs(ctx, SYSTEM, where=JobFilter(tag="nope")).total == 0

    for bad, why in [
        (5, "list of tags"),
        (["-dash-first"], "not a tag"),
        (["x" * 65], "not a tag"),
        ([f"t{i}" for i in range(21)], "at most 20"),
        ([1], "list of tags"),
    ]:
        with pytest.raises(SpecError) as caught:
            service.submit_job(ctx, dev, {**docker_spec(), "tags": bad})
        assert why in caught.value.fields["tags"], (bad, caught.value.fields)
    assert service.list_jobs(ctx, SYSTEM).total == 4  # the refused ones left nothing behind


def test_tags_from_the_form_and_the_list_links(ctx: Context) -> None:
    from tests.support.auth import csrf_of, signed_in

    client = signed_in(ctx, "developer")
    form = {"name": "tagged", "image": "jobsys/busybox:local", "command": "echo hi"}
    token = csrf_of(client.get("/jobs/new").get_data(as_text=True))
    posted = client.post(
        "/jobs/new", data={**form, "tags": "nightly, team=data", "csrf_token": token}
    )
    assert posted.status_code == 302
    page = client.get("/jobs?tag=team%3Ddata").get_data(as_text=True)
    assert "tagged" in page and 'href="/jobs?tag=nightly"' in page
    assert "No jobs match" in client.get("/jobs?tag=other").get_data(as_text=True)
    bad = client.post("/jobs/new", data={**form, "tags": "ok, no spaces", "csrf_token": token})
    assert bad.status_code == 400 and "is not a tag" in bad.get_data(as_text=True)
    assert service.list_jobs(ctx, SYSTEM).total == 1


def test_bulk_cancel_from_the_list(ctx: Context, seeded: list[str]) -> None:
    from tests.support.auth import csrf_of, signed_in

    client = signed_in(ctx, "operator")
    page = client.get("/jobs?owner=ann").get_data(as_text=True)
    assert "nightly-etl" in page and "backfill" not in page and 'form="bulk-cancel"' in page
    r = client.post(
        "/jobs/cancel",
        data={
            "job_id": [seeded[0], seeded[1], seeded[2]],
            "csrf_token": csrf_of(page),
            "next": "/jobs?owner=ann",
        },
    )
    assert r.status_code == 302 and "owner=ann" in r.headers["Location"]
    after = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "cancelled 2 job(s); 1 skipped" in after
    assert [service.get_job(ctx, SYSTEM, i).status for i in seeded] == [
        "cancelled",
        "failed",
        "cancelled",
        "queued",
    ]
    bad = client.get("/jobs?since=yesterday").get_data(as_text=True)
    assert "ISO date" in bad
