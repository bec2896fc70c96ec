"""Named secrets through a real worker (issue 17): a function step sees its
secrets as environment variables (in the sandbox and without it), a Docker
step's container gets them in its env, what either prints is stored and
streamed masked, and no value reaches the broker, the database or the next job."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.broker.dispatch import MemoryDispatcher
from tests.support.docker import step
from tests.support.live import LiveStack, RedisServer, private_stack
from tests.support.services import missing, require_docker

pytestmark = pytest.mark.integration

VALUE = "sk_live_9f8e7d6c5b4a39281706"
DIGEST = hashlib.sha256(VALUE.encode()).hexdigest()


@pytest.fixture(scope="module", params=["off", "on"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveStack, RedisServer]]:
    if request.param == "on" and shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap)", "run scripts/ensure-sandbox.sh")
    tmp = tmp_path_factory.mktemp(f"secrets-{request.param}")
    with closing(private_stack(tmp, f"secrets-{request.param}", sandbox=request.param)) as stacks:
        for stack, server in stacks:
            service.set_secret(stack.ctx, SYSTEM, "STRIPE_KEY", VALUE)
            yield stack, server


def leaked_anywhere(stack: LiveStack, server: RedisServer) -> list[str]:
    """Where the value shows: any Redis key (messages, results, event streams)
    or the SQLite file (specs, logs, results, audit)."""
    found = []
    client = redis.Redis.from_url(server.url)
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        dump = client.dump(key) or b""
        if kind == "stream":
            dump = repr(client.xrange(key)).encode()
        if VALUE.encode() in dump:
            found.append(f"redis {key.decode()}")
    database = Path(stack.settings.database_url.removeprefix("sqlite:///"))
    for path in (database, Path(f"{database}-wal")):
        if path.exists() and VALUE.encode() in path.read_bytes():
            found.append(str(path))
    return found


def test_a_function_step_sees_its_secret_and_its_logs_are_masked(
    live: tuple[LiveStack, RedisServer],
) -> None:
    stack, server = live

    def use(x: int) -> list[str]:
        import hashlib
        import os

        import jobsys

        print(f"calling the API with {os.environ['STRIPE_KEY']}")
        via_helper = jobsys.secret("STRIPE_KEY")
        return [hashlib.sha256(via_helper.encode()).hexdigest(), str(x)]

    def look(x: int) -> object:
        import os

        return os.environ.get("STRIPE_KEY")

    with stack.client() as client:
        job = client.map(use, [1, 2], secrets=["STRIPE_KEY"]).wait(timeout=90)
        assert job.status == "completed", job.error
        assert job.results() == [[DIGEST, "1"], [DIGEST, "2"]]
        streamed = [e["line"] for e in client.job(job.id).logs()]
        # The next job on the same worker slot, naming no secret, sees none.
        after = client.map(look, [1]).wait(timeout=90)
        assert after.results() == [None]
    assert any(line.endswith("calling the API with ***") for line in streamed), streamed
    stored = [e.line for e in service.job_logs(stack.ctx, SYSTEM, job.id)]
    assert any("calling the API with ***" in line for line in stored) and VALUE not in repr(stored)
    assert leaked_anywhere(stack, server) == []


@pytest.mark.docker
@pytest.mark.parametrize("live", ["off"], indirect=True)  # the sandbox is for function steps
def test_a_docker_steps_container_gets_the_secret_in_its_env(
    live: tuple[LiveStack, RedisServer],
) -> None:
    stack, server = live
    require_docker()
    script = 'echo "token=$API_TOKEN"; printf %s "$API_TOKEN" | sha256sum'
    env = {"API_TOKEN": {"secret": "STRIPE_KEY"}}
    spec = {"name": "uses-secret", "steps": [step(script, env=env)]}
    with stack.client() as client:
        job = client.submit_spec(spec).wait(timeout=90)
        assert job.status == "completed", job.error
        lines = [e["line"] for e in client.job(job.id).logs()]
    assert lines[0] == "token=***" and lines[1].startswith(DIGEST), lines
    assert leaked_anywhere(stack, server) == []


def test_a_step_whose_secret_was_deleted_fails_saying_so(
    live: tuple[LiveStack, RedisServer],
) -> None:
    stack, _server = live
    service.set_secret(stack.ctx, SYSTEM, "short_lived", "gone-soon-value")
    step = {"kind": "function", "function": "math:sqrt", "items": [4], "secrets": ["short_lived"]}
    # Stored while the broker is "down": the outbox holds the step until the
    # secret is gone, then the sweep hands it to the real broker and worker.
    offline = replace(stack.ctx, dispatcher=MemoryDispatcher(down=True))
    job = service.submit_job(offline, SYSTEM, {"name": "needs-deleted", "steps": [step]})
    service.delete_secret(stack.ctx, SYSTEM, "short_lived")
    time.sleep(stack.settings.outbox_grace_s + 0.1)
    assert service.sweep_outbox(stack.ctx) == 1
    with stack.client() as client:
        done = client.job(job.id).wait(timeout=90)
        ((ok, error),) = list(client.job(job.id).outcomes())
    assert done.status == "failed"
    assert not ok and error["type"] == "SecretUnavailable" and "deleted" in error["message"]
