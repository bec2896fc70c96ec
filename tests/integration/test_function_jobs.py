"""Function steps end to end: client -> HTTP API -> Redis -> real worker -> database."""

from __future__ import annotations

import math
from pathlib import Path

import cloudpickle
import pytest
from sqlalchemy import update

from jobsys import ItemsFailed, service
from jobsys.signing import Binding, Purpose, Signer, b64encode
from jobsys.store.models import Step
from tests.support.live import LiveStack

pytestmark = pytest.mark.integration


def test_map_squares_through_the_client(stack: LiveStack) -> None:
    with stack.client() as c:
        job = c.map(lambda x: x * x, range(1000))
        assert job.status in ("queued", "running")  # the worker may already have it
        job.wait(timeout=60)
        assert job.status == "completed", job.error
        assert job.results() == [x * x for x in range(1000)]
        # 1000 items in automatic chunks, one per slot of the stack's worker (-c 4)
        assert job.progress == (4, 4)
        tasks = job.tasks()
        assert [t["items"] for t in tasks][:2] == [[0, 250], [250, 500]]
        assert {t["state"] for t in tasks} == {"completed"}
        assert all(t["worker"].startswith(f"it-{stack.name}@") for t in tasks)


def test_failing_items_are_recorded_in_place(stack: LiveStack) -> None:
    def picky(x: int) -> tuple[int, float]:
        if x % 10 == 3:
            raise ValueError(f"no {x}")
        print(f"did {x}")
        return (x, math.sqrt(x))

    with stack.client() as c:
        job = c.map(picky, range(25), chunk_size=4).wait(timeout=60)
        assert job.status == "failed"
        assert "3 of 25 items failed (first: item 3: ValueError: no 3)" in job.error
        with pytest.raises(ItemsFailed) as info:
            job.results()
        assert sorted(info.value.errors) == [3, 13, 23]
        values = job.results(errors="return")
        assert values[4] == (4, 2.0)  # tuples come back as tuples
        assert values[13]["type"] == "ValueError" and "Traceback" in values[13]["traceback"]
        lines = [entry["line"] for entry in job.logs()]
        assert "[items 4-7] did 4" in lines

        tolerant = c.map(picky, range(5), tolerate_failures=True).wait(timeout=60)
        assert tolerant.status == "completed"
        assert tolerant.results(errors="return")[3]["message"] == "no 3"


def test_function_by_import_path(stack: LiveStack) -> None:
    spec = {
        "name": "sqrt",
        "steps": [{"kind": "function", "function": "math:sqrt", "items": [1, 4, 9]}],
    }
    with stack.client() as c:
        job = c.submit_spec(spec).wait(timeout=60)
        assert job.results() == [1.0, 2.0, 3.0]


class Trap:
    """A pickle whose loading writes ``path``: ``__reduce__`` runs on load, so the
    file proves the blob was unpickled, whether or not anything called it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return (Path.write_text, (self.path, "unpickled"))


def test_forged_pickle_is_refused_before_unpickling(stack: LiveStack, shared_path: Path) -> None:
    """A blob signed with another key reaches the worker and is refused there
    without being loaded; the same blob signed with the stack's key is loaded
    (and trips the trap), so the test would notice a worker that unpickles first."""
    marker = shared_path / "unpickled"

    def dispatch_signed_by(signer: Signer) -> str:
        spec = {
            "name": "forged",
            "steps": [
                {
                    "kind": "function",
                    "items": [1, 2],
                    "function": {"$pickle": b64encode(cloudpickle.dumps(abs))},
                }
            ],
        }
        job = stack.unpublished_job(spec)
        blob = signer.dumps(Trap(marker), Binding(Purpose.FUNCTION, job.id, job.steps[0].id))
        with stack.ctx.sessions.begin() as s:
            step = s.get_one(Step, job.steps[0].id)
            s.execute(
                update(Step)
                .where(Step.id == step.id)
                .values(spec={**step.spec, "function": {"$pickle": blob}})
            )
        assert service.dispatch_step(stack.ctx, job.steps[0].id)
        return job.id

    forged = dispatch_signed_by(Signer.from_secret("someone-elses-secret-key"))
    with stack.client() as c:
        done = c.job(forged).wait(timeout=60)
        assert done.status == "failed"
        assert "SignatureError" in done.error and "another JOBSYS_SECRET_KEY" in done.error
        assert done.results(errors="return")[0]["type"] == "SignatureError"
    assert not marker.exists()

    genuine = dispatch_signed_by(stack.ctx.signer)
    with stack.client() as c:
        signed = c.job(genuine).wait(timeout=60)
    assert marker.read_text() == "unpickled"  # the trap works on this worker
    assert "SignatureError" not in (signed.error or "")


def test_results_of_unfinished_job_are_409(stack: LiveStack) -> None:
    job = stack.unpublished_job(
        {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1]}]}
    )
    with stack.http() as http:
        r = http.get(f"/api/jobs/{job.id}/results")
        assert r.status_code == 409 and "wait for the job" in r.json()["message"]
    # leave nothing queued behind: the sweep publishes it once its grace has passed
    stack.sweep_until_sent(job.id)
    with stack.client() as c:
        assert c.job(job.id).wait(timeout=60).results() == [1.0]
