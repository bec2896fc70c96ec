"""Signed blobs say what they are for (function, items, result) and whose they
are (job and step); the worker's chunk task (run in-process on SQLite) checks
that before it unpickles anything, and copies into new jobs are signed afresh."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from sqlalchemy import select, update

from jobsys import service
from jobsys.auth import Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.context import Context
from jobsys.envelope import to_wire
from jobsys.errors import SignatureError, SpecError
from jobsys.signing import Binding, Purpose, b64encode
from jobsys.store.models import Step, StepItems, TaskRun
from workers import function_step


class Booby:
    """Unpickling this writes a file: proof that loads() ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_touch, (str(self.path),))


def _touch(path: str) -> None:
    Path(path).write_text("unpickled!")


def pickled(obj: Any) -> dict[str, str]:
    return {"$pickle": b64encode(cloudpickle.dumps(obj))}


def mapping(function: Any, items: list[Any], chunk_size: int = 10) -> dict[str, Any]:
    step = {"kind": "function", "function": function, "items": items, "chunk_size": chunk_size}
    return {"name": "map", "steps": [step]}


@pytest.fixture
def worker(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The chunk task runs in this process, against this test's database."""
    monkeypatch.setattr(function_step, "worker_context", lambda: ctx)
    return ctx


def run_plan(ctx: Context, plan: Any, items: list[Any] | None = None) -> None:
    """Deliver each chunk of ``plan`` to the real task body; ``items`` forges the
    first chunk's message (as someone who can write to the broker could)."""
    for n, chunk in enumerate(plan.chunks):
        sent = items if items is not None and n == 0 else list(chunk.items)
        function_step.run_function_chunk.apply(
            args=(plan.job_id, plan.step_id, chunk.index, chunk.start, sent),
            task_id=chunk.task_id,
        ).get()
    service.gather_function_step(ctx, plan.step_id)


def stored_function(ctx: Context, step_id: str) -> Any:
    with ctx.sessions() as s:
        return s.get_one(Step, step_id).spec["function"]


def task_errors(ctx: Context, job_id: str) -> list[str]:
    with ctx.sessions() as s:
        rows = s.scalars(select(TaskRun).where(TaskRun.job_id == job_id))
        return [r.error or "" for r in rows] + [
            str(o["error"]) for r in rows for o in (r.results or []) if not o["ok"]
        ]


def test_a_function_signed_for_one_job_is_refused_as_another_jobs(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    theirs = service.submit_job(worker, developer, mapping(pickled(Booby(marker)), [1]))
    mine = service.submit_job(worker, developer, mapping("builtins:abs", [-1]))
    blob = stored_function(worker, theirs.steps[0].id)
    with worker.sessions.begin() as s:  # someone who can write to the database moves it
        step = s.get_one(Step, mine.steps[0].id)
        s.execute(
            update(Step).where(Step.id == step.id).values(spec={**step.spec, "function": blob})
        )
    run_plan(worker, dispatcher.published[1])
    done = service.get_job(worker, developer, mine.id)
    assert done.status == "failed"
    errors = task_errors(worker, mine.id)
    assert any(f"the function of job {theirs.id}" in e for e in errors), errors
    assert any(f"offered as the function of job {mine.id}" in e for e in errors)
    assert not marker.exists()
    # No error names the blob itself.
    assert not any(blob["$pickle"].split(".")[-1][:40] in e for e in errors)


def test_a_function_blob_forged_into_a_message_as_an_item_is_refused(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    job = service.submit_job(worker, developer, mapping(pickled(Booby(marker)), [1]))
    blob = stored_function(worker, job.steps[0].id)
    fine = service.submit_job(worker, developer, mapping("builtins:repr", [1]))
    run_plan(worker, dispatcher.published[1], items=[blob])
    (outcome,) = service.job_results(worker, developer, fine.id)["results"]
    assert outcome["ok"] is False and outcome["error"]["type"] == "SignatureError"
    assert f"offered as the items of job {fine.id}" in outcome["error"]["message"]
    assert not marker.exists()


def test_results_are_signed_as_results_of_their_step(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(worker, developer, mapping("builtins:tuple", [[1, 2]]))
    run_plan(worker, dispatcher.published[0])
    with worker.sessions() as s:
        (value,) = [o["value"] for o in s.scalar(select(TaskRun.results))]
    step_id = job.steps[0].id
    blob = value["$pickle"]
    assert worker.signer.loads(blob, Binding(Purpose.RESULT, job.id, step_id)) == (1, 2)
    with pytest.raises(SignatureError):
        worker.signer.loads(blob, Binding(Purpose.ITEMS, job.id, step_id))


def test_results_copied_in_from_another_job_are_not_served(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    """Clients trust a job's results by its code owner: a result row moved in
    from someone else's job must not reach them as this job's."""
    theirs = service.submit_job(worker, developer, mapping("builtins:tuple", [[1, 2]]))
    mine = service.submit_job(worker, developer, mapping("builtins:tuple", [[3, 4]]))
    for plan in dispatcher.published:
        run_plan(worker, plan)
    with worker.sessions.begin() as s:
        moved = s.scalar(select(TaskRun.results).where(TaskRun.job_id == theirs.id))
        s.execute(update(TaskRun).where(TaskRun.job_id == mine.id).values(results=moved))
    assert service.job_results(worker, developer, theirs.id)["results"][0]["ok"]
    (served,) = service.job_results(worker, developer, mine.id)["results"]
    assert served["ok"] is False and served["error"]["type"] == "SignatureError"
    assert f"offered as the result of job {mine.id}" in served["error"]["message"]
    assert "value" not in served


def test_a_legacy_result_is_not_served_once_the_setting_is_off(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    job = service.submit_job(worker, developer, mapping("builtins:tuple", [[1, 2]]))
    run_plan(worker, dispatcher.published[0])
    with worker.sessions.begin() as s:  # a v1 result, as stored before bindings
        s.execute(
            update(TaskRun)
            .where(TaskRun.job_id == job.id)
            .values(results=[{"ok": True, "value": legacy(worker, (1, 2))}])
        )
    assert service.job_results(worker, developer, job.id)["results"][0]["ok"]
    strict = replace(worker, settings=replace(worker.settings, accept_legacy_signatures=False))
    (served,) = service.job_results(strict, developer, job.id)["results"]
    assert served["ok"] is False and "JOBSYS_ACCEPT_LEGACY_SIGNATURES" in served["error"]["message"]


def legacy(ctx: Context, obj: Any) -> dict[str, str]:
    """A pickle as jobsys stored it before signatures named their job and step."""
    data = cloudpickle.dumps(obj)
    mac = hmac.new(ctx.signer.key, data, hashlib.sha256).hexdigest()
    return {"$pickle": f"jobsys-signed-v1.{mac}.{b64encode(data)}"}


def make_legacy(ctx: Context, step_id: str, function: Any, items: list[Any]) -> None:
    with ctx.sessions.begin() as s:
        step = s.get_one(Step, step_id)
        spec = {**step.spec, "function": legacy(ctx, function)}
        s.execute(update(Step).where(Step.id == step_id).values(spec=spec))
        s.execute(
            update(StepItems)
            .where(StepItems.step_id == step_id)
            .values(items=[legacy(ctx, i) for i in items])
        )


def test_jobs_stored_before_bindings_still_run_and_rerun(
    worker: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = service.submit_job(worker, developer, mapping(pickled(len), [to_wire((1, 2))]))
    make_legacy(worker, old.steps[0].id, len, [(1, 2, 3)])
    plan = dispatcher.published[0]
    legacy_items = [legacy(worker, (1, 2, 3))]  # as its message, sent before the upgrade, has them
    run_plan(worker, plan, items=legacy_items)
    assert [r["value"] for r in service.job_results(worker, developer, old.id)["results"]] == [3]
    # A rerun verifies the old blobs and signs them for the new job.
    new = service.rerun_job(worker, developer, old.id)
    stored = stored_function(worker, new.steps[0].id)["$pickle"]
    assert stored.startswith(f"jobsys-signed-v2.function.{new.id}.{new.steps[0].id}.")
    strict = replace(worker, settings=replace(worker.settings, accept_legacy_signatures=False))
    monkeypatch.setattr(function_step, "worker_context", lambda: strict)
    # With legacy signatures turned off, the rerun still runs: it holds no legacy blob.
    run_plan(strict, dispatcher.published[-1])
    assert [r["value"] for r in service.job_results(worker, developer, new.id)["results"]] == [3]


def test_legacy_blobs_are_refused_once_the_setting_is_off(
    ctx: Context,
    dispatcher: MemoryDispatcher,
    developer: Principal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    strict = replace(ctx, settings=replace(ctx.settings, accept_legacy_signatures=False))
    monkeypatch.setattr(function_step, "worker_context", lambda: strict)
    old = service.submit_job(ctx, developer, mapping(pickled(len), [to_wire((1, 2))]))
    make_legacy(ctx, old.steps[0].id, len, [(1, 2)])
    run_plan(strict, dispatcher.published[0])
    errors = task_errors(ctx, old.id)
    assert any("JOBSYS_ACCEPT_LEGACY_SIGNATURES is off" in e for e in errors), errors


def test_resume_signs_carried_results_for_the_new_job(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    old = service.submit_job(
        worker, developer, mapping(pickled(tuple), [[1, 2], 5, [3]], chunk_size=1)
    )
    run_plan(worker, dispatcher.published[0])  # tuple(5) raises: item 1 fails
    assert service.get_job(worker, developer, old.id).status == "failed"
    new = service.resume_job(worker, developer, old.id)
    step_id = new.steps[0].id
    with worker.sessions() as s:
        carried = [
            o["value"]["$pickle"]
            for r in s.scalars(select(TaskRun).where(TaskRun.job_id == new.id))
            for o in (r.results or [])
        ]
    assert len(carried) == 2
    for blob in carried:
        worker.signer.verify(blob, Binding(Purpose.RESULT, new.id, step_id), legacy=False)
        with pytest.raises(SignatureError):
            worker.signer.verify(blob, Binding(Purpose.RESULT, old.id, old.steps[0].id))
    run_plan(worker, dispatcher.published[-1])
    results = service.job_results(worker, developer, new.id)["results"]
    assert [r["ok"] for r in results] == [True, False, True]


def test_a_tampered_carried_result_refuses_the_resume_without_quoting_it(
    worker: Context, dispatcher: MemoryDispatcher, developer: Principal
) -> None:
    old = service.submit_job(worker, developer, mapping(pickled(tuple), [[1, 2], 5], chunk_size=1))
    run_plan(worker, dispatcher.published[0])
    forged = worker.signer.dumps((9, 9), Binding(Purpose.RESULT, "f" * 32, "f" * 32))
    with worker.sessions.begin() as s:
        run = s.scalars(select(TaskRun).where(TaskRun.item_start == 0)).one()
        s.execute(
            update(TaskRun)
            .where(TaskRun.id == run.id)
            .values(results=[{"ok": True, "value": {"$pickle": forged, "repr": "(9, 9)"}}])
        )
    with pytest.raises(SpecError) as caught:
        service.resume_job(worker, developer, old.id)
    assert "steps[0].results" in caught.value.fields
    assert forged.split(".")[-1] not in caught.value.message
