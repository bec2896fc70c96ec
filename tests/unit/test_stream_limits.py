"""Live event streams cannot be used to exhaust the web app (issue 14, item 8).

Each open ``GET /api/jobs/<id>/events`` holds a web thread. A malformed
``Last-Event-ID`` is refused before anything streams, a follower backs off
while Redis fails instead of spinning over the database, open streams are
capped per principal, per web process and per deployment (slots counted in
Redis with leases), and one stream lives a bounded time before the client
reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import contextvars
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import fakeredis
import httpx
import pytest
import redis
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry
from sqlalchemy import event

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.events import RedisEventBus
from jobsys.context import Context
from jobsys.errors import SpecError
from tests.support.auth import bearer
from tests.support.events import run_docker_job, sse_events
from tests.support.specs import docker_spec
from webui import create_app

pytestmark = pytest.mark.usefixtures("quick_followers")


def with_bus(ctx: Context, client: redis.Redis, **settings: Any) -> Context:
    """``ctx`` with its events (and stream slots) on ``client``: one web process."""
    return Context(
        settings=replace(ctx.settings, **settings),
        sessions=ctx.sessions,
        dispatcher=ctx.dispatcher,
        events=RedisEventBus(client),
    )


@pytest.fixture
def live(ctx: Context, fake_redis: fakeredis.FakeRedis) -> Context:
    return with_bus(ctx, fake_redis)


def running_job(ctx: Context, developer: Principal) -> str:
    """A job that has started and not ended: a follower of it streams until closed."""
    job = service.submit_job(ctx, developer, docker_spec())
    task_id = ctx.dispatcher.published[-1].task_id  # type: ignore[attr-defined]
    assert service.start_task(ctx, task_id, "w1") is not None
    return job.id


def closed_port() -> int:
    """A local port nothing listens on: Redis there refuses every connection at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the event id ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "1",  # Redis would take it, but no event we send has such an id
        "1-",
        "-1",
        "1-2-3",
        " 1-2",
        "1-2\n",
        "\u0661-\u0662",  # Arabic-Indic digits match \d in Python, not in Redis
        f"{2**64}-0",  # past Redis's 64-bit range: "Invalid stream ID"
        "1" * 21 + "-0",
    ],
)
def test_parse_event_id_refuses_what_is_not_a_stream_id(bad: str) -> None:
    from jobsys.broker.events import parse_event_id

    with pytest.raises(SpecError) as err:
        parse_event_id(bad, "Last-Event-ID")
    assert "Last-Event-ID" in err.value.fields
    assert "<milliseconds>-<sequence>" in err.value.fields["Last-Event-ID"]


def test_parse_event_id_takes_stream_ids() -> None:
    from jobsys.broker.events import parse_event_id

    assert parse_event_id("0-0", "after") == "0-0"
    assert parse_event_id("1718000000000-12", "after") == "1718000000000-12"
    assert parse_event_id(f"{2**64 - 1}-{2**64 - 1}", "after") == f"{2**64 - 1}-{2**64 - 1}"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"headers": {"Last-Event-ID": "not-an-id"}}, "Last-Event-ID"),
        ({"query_string": {"last_event_id": "x"}}, "last_event_id"),
        ({"query_string": {"after": "1-2-3"}}, "after"),
    ],
)
def test_a_malformed_event_id_is_400_naming_where_it_came_from(
    live: Context, developer: Principal, where: dict[str, Any], field: str
) -> None:
    """Before the fix Redis refused the id on every read, and the follower looped
    over the database without waiting (about 1,000 times a second)."""
    job_id = run_docker_job(live, live.dispatcher, developer, ["one"])  # type: ignore[arg-type]
    client = create_app(context=live).test_client()
    headers = {**bearer(live, "viewer"), **where.get("headers", {})}
    r = client.get(
        f"/api/jobs/{job_id}/events", headers=headers, query_string=where.get("query_string")
    )
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json is not None and r.json["error"] == "SpecError"
    assert field in r.json["fields"] and "<milliseconds>-<sequence>" in r.json["message"]


def test_a_good_after_parameter_resumes_like_last_event_id(
    live: Context, developer: Principal
) -> None:
    job_id = run_docker_job(live, live.dispatcher, developer, ["one", "two"])  # type: ignore[arg-type]
    client = create_app(context=live).test_client()
    headers = bearer(live, "viewer")
    full = sse_events(client.get(f"/api/jobs/{job_id}/events", headers=headers).get_data(True))
    r = client.get(f"/api/jobs/{job_id}/events?after={full[1]['id']}", headers=headers)
    assert sse_events(r.get_data(as_text=True)) == full[2:]


# -- Redis down ----------------------------------------------------------------


def failing_redis(how: str) -> redis.Redis:
    """A Redis that fails every read at once: down (refused, with no client-side
    retries, as once redis-py's own are spent), or answering each read with an
    error (as for a malformed id, or WRONGTYPE)."""
    if how == "down":
        return redis.Redis(host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0))
    return Refusing()


class Refusing(fakeredis.FakeRedis):
    """Answers every stream read with an error, at once."""

    def xread(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


@pytest.mark.parametrize("how", ["down", "error"])
def test_a_follower_backs_off_while_redis_fails(
    ctx: Context, developer: Principal, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A failed read used to be followed by a database read and the next Redis
    read at once: hundreds of database reads a second per open stream."""
    monkeypatch.setattr("jobsys.service.live.WAIT_MS", 5_000)  # the real wait
    job_id = running_job(ctx, developer)
    down = with_bus(ctx, failing_redis(how))
    reads = 0

    def count(*_args: Any) -> None:
        nonlocal reads
        reads += 1

    engine = down.sessions.kw["bind"]
    stream = service.follow_job(down, developer, job_id)  # opens: slots fall back per process
    event.listen(engine, "begin", count)  # one per database read (a transaction)
    try:
        # The waits go 0.25, 0.5, 1, 2 s: a heartbeat comes at 1.75 s.
        deadline = time.monotonic() + 1.7
        beats = 0
        for item in stream:
            assert item is None  # nothing but heartbeats: the job goes on
            beats += 1
            if time.monotonic() > deadline:
                break
    finally:
        event.remove(engine, "begin", count)
        stream.close()
    assert beats >= 1  # it still tells the web server it is alive
    # under 5 a second (the code before the fix did about 65 a second here)
    assert reads <= 8, f"{reads} database reads in 1.75 s while Redis fails ({how})"


# -- how many streams ------------------------------------------------------------


class Held:
    """An open stream, as a web thread of its own would hold it.

    A streamed response keeps its request and app contexts pushed until it is
    closed (stream_with_context); opened side by side in one thread they would
    share ``g`` and must close in order. Each runs in a context of its own.
    """

    def __init__(self, client: FlaskClient, path: str, headers: dict[str, str]) -> None:
        self.context = contextvars.Context()
        self.response = self.context.run(client.get, path, headers=headers, buffered=False)

    def close(self) -> None:
        self.context.run(self.response.close)


def open_streams(client: FlaskClient, job_id: str, headers: dict[str, str], n: int) -> list[Held]:
    """Open ``n`` streams and keep them open (their bodies are not read)."""
    opened = []
    for _ in range(n):
        held = Held(client, f"/api/jobs/{job_id}/events", headers)
        assert held.response.status_code == 200, held.response.get_data(as_text=True)
        opened.append(held)
    return opened


def close_all(opened: list[Held]) -> None:
    for held in opened:
        held.close()


def test_the_ninth_stream_of_one_principal_is_429_until_one_closes(
    live: Context, developer: Principal
) -> None:
    job_id = running_job(live, developer)
    client = create_app(context=live).test_client()
    viewer = bearer(live, "viewer")
    opened = open_streams(client, job_id, viewer, 8)
    try:
        r = client.get(f"/api/jobs/{job_id}/events", headers=viewer)
        assert r.status_code == 429
        assert r.json is not None and r.json["error"] == "TooManyStreams"
        assert int(r.headers["Retry-After"]) >= 1
        assert "JOBSYS_STREAMS_PER_PRINCIPAL" in r.json["message"]
        assert "8" in r.json["message"]
        # someone else is not held back by the first viewer's streams
        open_streams(client, job_id, bearer(live, "operator"), 1)[0].close()
        opened.pop(3).close()  # a tab closed: its slot is free at once
        opened += open_streams(client, job_id, viewer, 1)
    finally:
        close_all(opened)


def test_the_client_raises_too_many_streams_on_its_first_connection(
    live: Context, developer: Principal
) -> None:
    """A 429 on a reconnect is waited out (Retry-After); on the first it is the answer."""
    from jobsys.client.http import Client
    from jobsys.errors import TooManyStreams

    job_id = running_job(live, developer)
    app = create_app(context=live)
    viewer = bearer(live, "viewer")
    opened = open_streams(app.test_client(), job_id, viewer, 8)
    try:
        with Client("http://jobsys.test") as c:
            c._http = httpx.Client(
                transport=httpx.WSGITransport(app=app), base_url=c.url, headers=viewer
            )
            with pytest.raises(TooManyStreams, match="JOBSYS_STREAMS_PER_PRINCIPAL") as err:
                next(c.job(job_id).events())
        assert err.value.status_code == 429  # type: ignore[attr-defined]
        assert err.value.retry_after_s == 10
    finally:
        close_all(opened)


def test_the_total_is_counted_across_web_processes(
    ctx: Context, developer: Principal, fake_redis: fakeredis.FakeRedis
) -> None:
    """Two web processes (two contexts, each with its own per-process count) on
    one Redis share the deployment's total."""
    first = with_bus(ctx, fake_redis, streams_total=3)
    second = with_bus(ctx, fake_redis, streams_total=3)
    job_id = running_job(first, developer)
    a = create_app(context=first).test_client()
    b = create_app(context=second).test_client()
    opened = open_streams(a, job_id, bearer(first, "viewer"), 2)
    opened += open_streams(b, job_id, bearer(second, "operator"), 1)
    try:
        r = b.get(f"/api/jobs/{job_id}/events", headers=bearer(second, "admin"))
        assert r.status_code == 429 and r.headers["Retry-After"]
        assert r.json is not None and "JOBSYS_STREAMS_TOTAL" in r.json["message"]
    finally:
        close_all(opened)
    assert fake_redis.zcard("jobsys:slots:live:all") == 0


def test_one_web_process_keeps_threads_for_pages(live: Context, developer: Principal) -> None:
    """gunicorn does not spread connections evenly over its processes: each one
    caps its own streams so pages always find a thread."""
    ctx = with_bus(live, live.events.client, streams_per_process=2)  # type: ignore[attr-defined]
    job_id = running_job(ctx, developer)
    client = create_app(context=ctx).test_client()
    opened = open_streams(client, job_id, bearer(ctx, "viewer"), 1)
    opened += open_streams(client, job_id, bearer(ctx, "operator"), 1)
    try:
        r = client.get(f"/api/jobs/{job_id}/events", headers=bearer(ctx, "admin"))
        assert r.status_code == 429
        assert r.json is not None and "JOBSYS_STREAMS_PER_PROCESS" in r.json["message"]
        assert client.get(f"/api/jobs/{job_id}", headers=bearer(ctx, "admin")).status_code == 200
    finally:
        close_all(opened)


def test_with_redis_down_the_per_process_caps_still_hold(
    ctx: Context, developer: Principal
) -> None:
    from jobsys.errors import TooManyStreams

    job_id = running_job(ctx, developer)
    down = with_bus(ctx, failing_redis("down"), streams_per_principal=2)
    first = service.follow_job(down, developer, job_id)  # not refused for Redis's sake
    second = service.follow_job(down, developer, job_id)
    try:
        with pytest.raises(TooManyStreams, match="JOBSYS_STREAMS_PER_PRINCIPAL=2"):
            service.follow_job(down, developer, job_id)
    finally:
        first.close()
        second.close()
    service.follow_job(down, developer, job_id).close()  # freed


# -- slots with leases -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis", "local"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Clock]]:
    from jobsys.broker.slots import LocalSlots, RedisSlots

    clock = Clock()
    if request.param == "redis":
        yield RedisSlots(fakeredis.FakeRedis(), clock=clock), clock
    else:
        yield LocalSlots(clock=clock), clock


def test_a_slot_of_a_crashed_process_runs_out_with_its_lease(
    store: tuple[Any, Clock],
) -> None:
    slots, clock = store
    assert slots.take("live", "eve", "s1", per_owner=1, total=5, lease_s=30) is None
    assert slots.take("live", "eve", "s2", per_owner=1, total=5, lease_s=30) == "owner"
    clock.now += 20
    slots.renew("live", "eve", "s1", lease_s=30)  # a live holder renews
    clock.now += 20
    assert slots.take("live", "eve", "s2", per_owner=1, total=5, lease_s=30) == "owner"
    # s1's process dies: nobody renews, and the lease runs out
    clock.now += 31
    assert slots.take("live", "eve", "s2", per_owner=1, total=5, lease_s=30) is None
    slots.release("live", "eve", "s2")
    assert slots.take("live", "eve", "s3", per_owner=1, total=5, lease_s=30) is None


def test_the_total_counts_every_owner(store: tuple[Any, Clock]) -> None:
    slots, _clock = store
    for n in range(3):
        assert slots.take("live", f"user{n}", f"s{n}", per_owner=8, total=3, lease_s=30) is None
    assert slots.take("live", "user9", "s9", per_owner=8, total=3, lease_s=30) == "total"
    slots.release("live", "user0", "s0")
    assert slots.take("live", "user9", "s9", per_owner=8, total=3, lease_s=30) is None


def test_redis_slot_keys_expire_on_their_own() -> None:
    """A web process that crashed leaves keys that Redis drops by itself."""
    from jobsys.broker.slots import RedisSlots

    client = fakeredis.FakeRedis()
    RedisSlots(client).take("live", "eve", "s1", per_owner=8, total=8, lease_s=30)
    keys = sorted(k.decode() for k in client.keys("jobsys:slots:*"))
    assert keys == ["jobsys:slots:live:all", "jobsys:slots:live:by:eve"]
    assert all(0 < client.pttl(k) <= 30_000 for k in keys)


# -- a stream's lifetime -------------------------------------------------------------


def test_a_stream_ends_at_its_lifetime_without_end_so_clients_reconnect(
    live: Context, developer: Principal
) -> None:
    ctx = with_bus(live, live.events.client, stream_max_s=0.3)  # type: ignore[attr-defined]
    job_id = running_job(ctx, developer)
    client = create_app(context=ctx).test_client()
    started = time.monotonic()
    r = client.get(f"/api/jobs/{job_id}/events", headers=bearer(ctx, "viewer"))
    body = r.get_data(as_text=True)
    assert r.status_code == 200
    assert time.monotonic() - started < 5  # it ended by itself, the job still running
    events = sse_events(body)
    kinds = [e["event"] for e in events]
    # "end" would make EventSource and the client stop; "reconnect" carries no id,
    # so the browser's Last-Event-ID stays the last real event's
    assert kinds == ["status", "reconnect"]
    assert "id" not in events[-1] and "JOBSYS_STREAM_MAX_S" in events[-1]["data"]
    # its slot is free again
    assert live.events.client.zcard("jobsys:slots:live:all") == 0  # type: ignore[attr-defined]
