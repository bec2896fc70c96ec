"""Waiting for jobs to end on real Redis: a wait answers when the job ends, not
at its timeout, however the end falls against the waiter's steps; it reads the
database while Redis is down; and on the live stack (real worker) ``?wait=``,
``POST /api/jobs/wait``, ``Job.wait`` and the Executor's one follower.

"Answered when the job ended, not at the timeout" is shown without timing the
call: each wait has a long timeout, and a ``Late`` flag that a timer sets
halfway through it must still be down when the answer is in (a waiter that
missed the end would only answer at its timeout, long after the flag).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

import jobsys
from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.events import RedisEventBus
from jobsys.context import Context
from jobsys.service import waiting
from jobsys.service.stream_slots import LIVE
from tests.support.events import play_docker_step
from tests.support.fixtures import make_context, make_settings
from tests.support.live import LiveStack, RedisServer, free_port, wait_until
from tests.support.services import redis_url, require_redis
from tests.support.specs import docker_spec

pytestmark = pytest.mark.integration

#: Every wait here may last this long; its ``Late`` flag goes up at half of it.
LONG_WAIT_S = 40.0


class Late:
    """A flag that goes up ``after_s`` seconds from now (cancelled on exit)."""

    def __init__(self, after_s: float = LONG_WAIT_S / 2) -> None:
        self.flag = threading.Event()
        self.timer = threading.Timer(after_s, self.flag.set)

    def __enter__(self) -> threading.Event:
        self.timer.start()
        return self.flag

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()


# -- one web process's service on real Redis, the worker played by the test ----


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """The service on real Redis, each blocking read lasting up to the whole
    wait: an end the events failed to announce would then be found only at the
    timeout (not at the next read, every 5 s), after the ``Late`` flag."""
    require_redis()
    settings = make_settings(tmp_path, redis_url=redis_url("waiting"))
    client = redis.Redis.from_url(settings.redis_url)
    reader = redis.Redis.from_url(settings.redis_url, socket_timeout=LONG_WAIT_S + 10)
    ctx = replace(make_context(settings), events=RedisEventBus(client, wait_client=reader))
    monkeypatch.setattr(waiting, "WAIT_BLOCK_MS", int(LONG_WAIT_S * 1000))
    client.flushdb()
    yield ctx
    client.flushdb()


def holds_a_slot(ctx: Context) -> bool:
    """Whether a waiter has got past its first look and blocks on the streams."""
    return bool(ctx.events.client.zcard(f"jobsys:slots:{LIVE}:all"))  # type: ignore[attr-defined]


def end_when_blocked(ctx: Context, sent: Any) -> threading.Thread:
    """End the job of ``sent`` as a worker would, once a waiter blocks on it."""

    def work() -> None:
        wait_until(lambda: holds_a_slot(ctx), 20, "the waiter to block")
        play_docker_step(ctx, sent)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_wait_answers_when_the_job_ends(live: Context, developer: Principal) -> None:
    job = service.submit_job(live, developer, docker_spec())
    worker = end_when_blocked(live, live.dispatcher.published[-1])  # type: ignore[attr-defined]
    with Late() as late:
        found = service.wait_for_job(live, developer, job.id, LONG_WAIT_S)
        assert not late.is_set(), "the wait answered at its timeout, not at the job's end"
    worker.join()
    assert found.status == "completed"
    assert not holds_a_slot(live)  # released with the answer


def test_many_jobs_answer_when_one_ends(live: Context, developer: Principal) -> None:
    first = service.submit_job(live, developer, docker_spec())
    sent_first = live.dispatcher.published[-1]  # type: ignore[attr-defined]
    second = service.submit_job(live, developer, docker_spec())
    worker = end_when_blocked(live, sent_first)
    with Late() as late:
        found = service.wait_for_jobs(live, developer, [second.id, first.id], LONG_WAIT_S)
        assert not late.is_set(), "the wait answered at its timeout, not at the job's end"
    worker.join()
    assert [j.id for j in found.ended] == [first.id]
    assert found.ended[0].status == "completed"
    assert found.open == (second.id,) and found.missing == ()


def test_an_end_between_the_first_look_and_the_read_is_not_missed(
    live: Context, developer: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a long-poll must not lose: the job ends (and its event is
    published) after the waiter read the database and before it blocks on the
    stream. The stream is read after the id taken *before* the database read,
    so the event is there to be found."""
    job = service.submit_job(live, developer, docker_spec())
    sent = live.dispatcher.published[-1]  # type: ignore[attr-defined]
    looks = 0
    real = waiting._statuses

    def look_then_end(ctx: Context, principal: Principal, ids: list[str]) -> dict[str, str]:
        nonlocal looks
        looks += 1
        seen = real(ctx, principal, ids)
        if looks == 1:
            play_docker_step(ctx, sent)  # ends it right after the look saw it queued
        return seen

    monkeypatch.setattr(waiting, "_statuses", look_then_end)
    with Late() as late:
        found = service.wait_for_jobs(live, developer, [job.id], LONG_WAIT_S)
        assert not late.is_set(), "the end's event was missed: the wait ran to its timeout"
    assert [j.id for j in found.ended] == [job.id]


def test_while_redis_is_down_a_wait_reads_the_database(
    tmp_path: Path, developer: Principal
) -> None:
    """A stopped Redis costs the live events, never the caller: the wait polls
    the database and answers with the job's end, without an error."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        settings = make_settings(tmp_path, redis_url=server.url)
        ctx = replace(make_context(settings), events=RedisEventBus.from_url(settings.redis_url))
        job = service.submit_job(ctx, developer, docker_spec())
        sent = ctx.dispatcher.published[-1]  # type: ignore[attr-defined]
        server.stop()

        def work() -> None:
            time.sleep(0.5)  # let the waiter find Redis gone and start reading the database
            play_docker_step(ctx, sent)  # its events are lost: Redis is down

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        with Late() as late:
            found = service.wait_for_job(ctx, developer, job.id, LONG_WAIT_S)
            assert not late.is_set(), "with Redis down the wait missed the job's end"
        worker.join()
        assert found.status == "completed"
        # and a job that does not end is answered, as it is, at the timeout
        queued = service.submit_job(ctx, developer, docker_spec())
        assert service.wait_for_job(ctx, developer, queued.id, 0.5).status == "queued"
    finally:
        server.stop()


# -- the live stack: web app under gunicorn, a real worker ----------------------


def short(x: int) -> int:
    time.sleep(0.3)
    return x + 1


def test_get_with_wait_answers_when_the_job_ends(stack: LiveStack) -> None:
    with stack.client() as c, stack.http("viewer") as http:
        job = c.submit(short, 1)
        with Late() as late:
            r = http.get(f"/api/jobs/{job.id}", params={"wait": LONG_WAIT_S}, timeout=60)
            assert not late.is_set(), "the wait answered at its timeout, not at the job's end"
        assert r.status_code == 200 and r.json()["status"] == "completed"
        assert r.headers["Jobsys-Wait"] == "1"
        assert job.results() == [2]


def test_get_with_wait_gives_the_current_state_after_s(stack: LiveStack) -> None:
    queued = stack.unpublished_job(docker_spec())  # never sent: it cannot end
    with stack.http("viewer") as http:
        started = time.monotonic()
        r = http.get(f"/api/jobs/{queued.id}", params={"wait": 0.5})
        waited = time.monotonic() - started
        bad = http.get(f"/api/jobs/{queued.id}", params={"wait": "61"})
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert r.json()["id"] == queued.id and waited >= 0.5  # it did wait the 0.5 s out
    assert bad.status_code == 400 and "wait" in bad.json()["fields"]


def test_many_jobs_on_the_live_stack(stack: LiveStack) -> None:
    queued = stack.unpublished_job(docker_spec())
    with stack.client() as c, stack.http("viewer") as http:
        done = c.submit(short, 1).wait(timeout=60)
        ids = [queued.id, done.id, "no-such-job"]
        at_once = http.post("/api/jobs/wait", json={"ids": ids, "timeout_s": 60}, timeout=90)
        running = c.submit(short, 2)
        with Late() as late:
            later = http.post(
                "/api/jobs/wait",
                json={"ids": [queued.id, running.id], "timeout_s": LONG_WAIT_S},
                timeout=90,
            )
            assert not late.is_set(), "the wait answered at its timeout, not at the job's end"
    assert at_once.status_code == 200, at_once.text
    assert [j["id"] for j in at_once.json()["ended"]] == [done.id]
    assert at_once.json()["open"] == [queued.id]
    assert at_once.json()["missing"] == ["no-such-job"]
    assert [j["id"] for j in later.json()["ended"]] == [running.id]
    assert later.json()["ended"][0]["status"] == "completed"
    assert later.json()["open"] == [queued.id]


def test_job_wait_long_polls_and_times_out(stack: LiveStack) -> None:
    queued = stack.unpublished_job(docker_spec())
    with stack.client() as c:
        sent: list[httpx.Request] = []
        c._http.event_hooks["request"].append(sent.append)
        job = c.submit(short, 1)
        with Late() as late:
            assert job.wait(timeout=LONG_WAIT_S).status == "completed"
            assert not late.is_set()
        waits = [r for r in sent if r.url.path == f"/api/jobs/{job.id}"]
        assert waits and all("wait" in r.url.params for r in waits)
        # the answer that told of the end brought the one outcome along
        asked = len(sent)
        assert job.results() == [2] and len(sent) == asked
        with pytest.raises(TimeoutError):
            c.job(queued.id).wait(timeout=0.5)


def test_the_executor_follows_every_future_with_one_wait(stack: LiveStack) -> None:
    """Twenty open futures: no thread per future, and the follower asks about
    them all in one ``POST /api/jobs/wait`` instead of reading each job, whose
    answers bring each ended job's outcome along."""
    with stack.client() as c:
        sent: list[httpx.Request] = []
        c._http.event_hooks["request"].append(sent.append)
        with jobsys.Executor(client=c, poll_s=LONG_WAIT_S) as ex:
            threads = threading.active_count()
            futures = [ex.submit(short, n) for n in range(20)]
            assert threading.active_count() == threads
            assert [f.result(timeout=120) for f in futures] == [n + 1 for n in range(20)]
    paths = [r.url.path for r in sent]
    job_reads = [p for p in paths if p.startswith("/api/jobs/") and p.count("/") == 3]
    assert job_reads == ["/api/jobs/wait"] * len(job_reads)  # never GET /api/jobs/<id>
    # each ended job's outcome came in the wait's answer: no results request
    assert not [p for p in paths if p.endswith("/results")], paths
    named = [len(json.loads(r.content)["ids"]) for r in sent if r.url.path == "/api/jobs/wait"]
    assert max(named) > 1


def test_an_executor_result_comes_when_its_job_ends(stack: LiveStack) -> None:
    """Even when each of the follower's waits may last LONG_WAIT_S."""
    with stack.client() as c, jobsys.Executor(client=c, poll_s=LONG_WAIT_S) as ex:
        for n in range(3):
            with Late() as late:
                assert ex.submit(short, n).result(timeout=60) == n + 1
                assert not late.is_set(), "the result came at the follower's timeout"


def test_results_of_an_open_job_come_in_one_request(stack: LiveStack) -> None:
    """submit then results(): the results request waits for the end itself and
    answers with the first page, with no wait() request before it."""
    queued = stack.unpublished_job(docker_spec())
    with stack.client() as c:
        sent: list[httpx.Request] = []
        job = c.submit(short, 1)
        c._http.event_hooks["request"].append(sent.append)
        with Late() as late:
            assert job.results() == [2]
            assert not late.is_set(), "the results came at the wait's timeout"
        assert [r.url.path for r in sent] == [f"/api/jobs/{job.id}/results"]
        assert "wait" in sent[0].url.params
        with pytest.raises(TimeoutError):
            c.job(queued.id).results(timeout=0.5)


def test_executor_map_waits_in_its_results_request(stack: LiveStack) -> None:
    with stack.client() as c:
        sent: list[httpx.Request] = []
        with jobsys.Executor(client=c, poll_s=LONG_WAIT_S) as ex:
            c._http.event_hooks["request"].append(sent.append)
            assert list(ex.map(short, [1, 2], timeout=60)) == [2, 3]
    reads = [r for r in sent if r.method == "GET"]
    assert len(reads) == 1 and reads[0].url.path.endswith("/results"), [r.url for r in sent]
    assert "wait" in reads[0].url.params
