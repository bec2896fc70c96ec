from __future__ import annotations

from celery.canvas import _chord

from jobsys.broker.canvas import (
    DOCKER_QUEUE,
    GATHER_FUNCTION_STEP,
    PYTHON_QUEUE,
    RUN_DOCKER_STEP,
    RUN_FUNCTION_CHUNK,
    ChunkPlan,
    StepPlan,
    step_signature,
)


def test_docker_step_is_one_task_on_the_docker_queue() -> None:
    sig = step_signature(StepPlan(job_id="j", step_id="s", kind="docker", task_id="t1"))
    assert sig.task == RUN_DOCKER_STEP
    assert sig.args == ("j", "s")
    assert sig.options["queue"] == DOCKER_QUEUE
    assert sig.options["task_id"] == "t1"
    assert sig.options["ignore_result"] is True  # it reports to the database
    assert sig.immutable


def test_function_step_is_a_chord_of_chunks_and_a_gather() -> None:
    chunks = [
        ChunkPlan(task_id=f"c{i}", index=i, start=i * 2, stop=i * 2 + 2, items=[i * 2, i * 2 + 1])
        for i in range(3)
    ]
    plan = StepPlan(job_id="j", step_id="s", kind="function", task_id="g", chunks=chunks)
    sig = step_signature(plan)
    assert isinstance(sig, _chord)
    header = list(sig.tasks)
    assert [h.task for h in header] == [RUN_FUNCTION_CHUNK] * 3
    assert [h.args for h in header] == [("j", "s", i, i * 2, [i * 2, i * 2 + 1]) for i in range(3)]
    assert {h.options["queue"] for h in header} == {PYTHON_QUEUE}
    assert [h.options["task_id"] for h in header] == ["c0", "c1", "c2"]
    body = sig.body
    assert body.task == GATHER_FUNCTION_STEP
    assert body.args == ("j", "s") and body.immutable
    assert body.options["task_id"] == "g"


def test_a_one_chunk_step_is_its_chunk_alone_told_to_end_the_step() -> None:
    """No chord for one chunk: the task ends its step itself (``sole``), and stores
    no result, since no callback reads it."""
    chunk = ChunkPlan(task_id="c0", index=0, start=0, stop=1, items=[[[1], {}]])
    plan = StepPlan(job_id="j", step_id="s", kind="function", task_id="g", chunks=[chunk])
    sig = step_signature(plan)
    assert not isinstance(sig, _chord)
    assert sig.task == RUN_FUNCTION_CHUNK
    assert sig.args == ("j", "s", 0, 0, [[[1], {}]])
    assert sig.kwargs == {"sole": True}
    assert sig.options["task_id"] == "c0" and sig.options["ignore_result"] is True
    assert sig.options["queue"] == PYTHON_QUEUE


def test_chunks_of_a_chord_do_not_end_their_step() -> None:
    chunks = [ChunkPlan(task_id=f"c{i}", index=i, start=i, stop=i + 1, items=[i]) for i in (0, 1)]
    plan = StepPlan(job_id="j", step_id="s", kind="function", task_id="g", chunks=chunks)
    header = list(step_signature(plan).tasks)
    assert [h.kwargs for h in header] == [{}, {}]
    assert all("ignore_result" not in h.options for h in header)
