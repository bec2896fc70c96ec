"""The client unpickles only results it has reason to trust (issue 14, item 4).

A result whose ``__reduce__`` writes a marker file stands in for a developer's
booby-trapped object: reading it must not run that code for anyone but the
principal who supplied the job's code (kept through a rerun by someone else),
unless the reader passes ``trust=True`` or calls ``UntrustedResult.load()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from flask import Flask

import jobsys
from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.client.executor import Executor
from jobsys.client.http import Client
from jobsys.context import Context
from jobsys.envelope import ok
from jobsys.signing import Binding, Purpose, b64encode

MALLORY = Principal("mallory", "developer")
ALICE = Principal("alice", "developer")


def _plant(marker: str) -> str:
    """What the trap runs when it is unpickled: leave a mark."""
    Path(marker).write_text("unpickled")
    return "planted"


class Trap:
    """A result that runs ``_plant`` on whoever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_plant, (self.marker,))

    def __repr__(self) -> str:
        return "Trap()"


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "trap-fired"


def client_as(ctx: Context, app: Flask, who: Principal) -> Client:
    token = service.create_token(ctx, SYSTEM, name=who.name, role=who.role).token
    return Client("http://jobsys.test", token, transport=httpx.WSGITransport(app=app))


def finish(ctx: Context, dispatcher: MemoryDispatcher, marker: Path) -> None:
    """Run the last published plan: item 0 returns the trap, item 1 returns 7."""
    plan = dispatcher.published[-1]
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        for_result = Binding(Purpose.RESULT, plan.job_id, plan.step_id)
        values = [ok(Trap(marker), ctx.signer, for_result), {"ok": True, "value": 7}]
        service.finish_task(ctx, chunk.task_id, ok=True, results=values, failed_items=0)
    service.gather_function_step(ctx, plan.step_id)


def trapped_job(ctx: Context, dispatcher: MemoryDispatcher, marker: Path) -> str:
    """A job mallory submitted with her own pickled function, whose result is a trap."""
    fn = {"$pickle": b64encode(cloudpickle.dumps(abs))}
    step = {"kind": "function", "function": fn, "items": [1, 2], "chunk_size": 2}
    job = service.submit_job(ctx, MALLORY, {"name": "gift", "steps": [step]})
    finish(ctx, dispatcher, marker)
    return job.id


def test_another_principals_results_stay_pickled(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, marker: Path
) -> None:
    job_id = trapped_job(ctx, dispatcher, marker)
    with client_as(ctx, app, ALICE) as alice:
        job = alice.job(job_id)
        assert job.data["code_owner"] == "mallory"
        values = job.results()
        assert list(job.iter_results())[1] == 7
        outcomes = list(job.outcomes())
        with Executor(client=alice, poll_s=0.01) as ex:
            through_executor = ex._outcomes(job)
    assert not marker.exists(), "reading someone else's results ran their code"

    opaque = values[0]
    assert isinstance(opaque, jobsys.UntrustedResult) and values[1] == 7
    assert opaque.repr == "Trap()" and opaque.code_owner == "mallory"
    assert opaque.job_id == job_id and isinstance(opaque.data, bytes) and opaque.data
    assert "Trap()" in repr(opaque) and "mallory" in repr(opaque)
    assert outcomes[0] == (True, opaque)
    assert through_executor[0] == (True, opaque)
    assert service.job_results(ctx, ALICE, job_id)["trusted"] is False

    assert opaque.load() == "planted"  # on explicit request only
    assert marker.exists()


def test_trust_true_unpickles(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, marker: Path
) -> None:
    job_id = trapped_job(ctx, dispatcher, marker)
    with client_as(ctx, app, ALICE) as alice:
        assert alice.job(job_id).results(trust=True) == ["planted", 7]
    assert marker.exists()


def test_the_code_owner_unpickles_their_own_results(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, marker: Path
) -> None:
    job_id = trapped_job(ctx, dispatcher, marker)
    assert service.job_results(ctx, MALLORY, job_id)["trusted"] is True
    with client_as(ctx, app, MALLORY) as mallory:
        assert mallory.job(job_id).results() == ["planted", 7]
    assert marker.exists()


def test_a_rerun_by_someone_else_keeps_the_original_owners_trust(
    ctx: Context, dispatcher: MemoryDispatcher, app: Flask, marker: Path
) -> None:
    old = trapped_job(ctx, dispatcher, marker)
    new = service.rerun_job(ctx, ALICE, old)
    assert new.owner == "alice" and new.code_owner == "mallory"
    finish(ctx, dispatcher, marker)
    with client_as(ctx, app, ALICE) as alice:
        values = alice.job(new.id).results()
    assert not marker.exists(), "a rerun by alice made mallory's code trusted by alice"
    assert isinstance(values[0], jobsys.UntrustedResult)
    with client_as(ctx, app, MALLORY) as mallory:
        assert mallory.job(new.id).results()[0] == "planted"
    assert marker.exists()


def test_json_results_need_no_trust(ctx: Context, dispatcher: MemoryDispatcher, app: Flask) -> None:
    """Values JSON carries come back as themselves for every reader."""
    step = {"kind": "function", "function": "builtins:abs", "items": [-1, -2]}
    job = service.submit_job(ctx, MALLORY, {"name": "plain", "steps": [step]})
    plan = dispatcher.published[-1]
    for chunk in plan.chunks:
        service.start_task(ctx, chunk.task_id, "w")
        values = [{"ok": True, "value": abs(i)} for i in (-1, -2)][chunk.start : chunk.stop]
        service.finish_task(ctx, chunk.task_id, ok=True, results=values, failed_items=0)
    service.gather_function_step(ctx, plan.step_id)
    with client_as(ctx, app, ALICE) as alice:
        assert alice.job(job.id).results() == [1, 2]
