"""Live events of function steps on the live stack: print output tagged with
its item range reaches a follower while the job runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from jobsys import Client, service
from jobsys.auth import SYSTEM
from jobsys.broker.events import RedisEventBus
from jobsys.context import Context
from tests.support.fixtures import make_context, make_settings
from tests.support.live import SECRET, LiveStack
from tests.support.services import redis_url, require_redis
from tests.support.specs import docker_spec
from webui import create_app

pytestmark = pytest.mark.integration


def slow_and_chatty(x: int) -> int:
    print(f"working on {x}")
    time.sleep(0.5)
    return x * 10


def test_function_prints_stream_live_with_their_item_range(stack: LiveStack) -> None:
    with stack.client() as c:
        job = c.map(slow_and_chatty, range(4), chunk_size=2)
        seen = []
        for event in job.events():
            if event["event"] == "log":
                if not seen:
                    status_at_first_line = c.job(job.id).status
                seen.append(event["data"]["line"])
        assert status_at_first_line == "running"
        assert sorted(seen) == [
            "[items 0-1] working on 0",
            "[items 0-1] working on 1",
            "[items 2-3] working on 2",
            "[items 2-3] working on 3",
        ]
        assert job.wait(timeout=30).results() == [0, 10, 20, 30]


@pytest.fixture
def short_lived_streams(tmp_path: Path) -> Iterator[tuple[Context, str, list[str | None]]]:
    """The web app on a real HTTP server over real Redis, each event stream
    ending after half a second (JOBSYS_STREAM_MAX_S); with the Last-Event-ID
    of every stream opened."""
    require_redis()
    settings = make_settings(
        tmp_path, secret_key=SECRET, redis_url=redis_url("live-events"), stream_max_s=0.5
    )
    ctx = replace(make_context(settings), events=RedisEventBus.from_url(settings.redis_url))
    app = create_app(context=ctx)
    opened: list[str | None] = []
    inner = app.wsgi_app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"].endswith("/events"):
            opened.append(environ.get("HTTP_LAST_EVENT_ID"))
        return inner(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ctx, f"http://127.0.0.1:{server.server_port}", opened
    finally:
        server.shutdown()
        client = ctx.events.client  # type: ignore[attr-defined]
        for key in [*client.scan_iter("jobsys:slots:*"), *client.scan_iter("jobsys:events*")]:
            client.delete(key)


def test_the_client_follows_across_stream_lifetimes_missing_nothing(
    short_lived_streams: tuple[Context, str, list[str | None]],
) -> None:
    ctx, url, opened = short_lived_streams
    job = service.submit_job(ctx, SYSTEM, docker_spec())  # queued: no worker here
    token = service.create_token(ctx, SYSTEM, name="watcher", role="viewer").token
    lines = [f"line {n}" for n in range(40)]

    def work() -> None:  # a worker writing lines for about 3 s, then the end
        for line in lines:
            ctx.events.publish(job.id, "log", {"line": line, "stream": "stdout"})
            time.sleep(0.075)
        ctx.events.publish(job.id, "status", {"job_id": job.id, "status": "completed"})

    worker = threading.Thread(target=work)
    with Client(url, token) as c:
        followed = c.job(job.id)
        worker.start()
        seen = [entry["line"] for entry in followed.logs(follow=True)]
    worker.join()
    assert seen == lines  # each once, in order, across every reconnect
    assert len(opened) >= 4, opened  # ~3 s of streams that live 0.5 s each
    assert opened[0] is None and all(opened[1:])  # every reconnect named its last event
    # and no slot is left behind once the client is done
    assert ctx.events.client.zcard("jobsys:slots:live:all") == 0  # type: ignore[attr-defined]
