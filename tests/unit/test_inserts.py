"""New rows written by Core INSERTs (``jobsys.store.inserts``) read back as the ORM
would have stored them: defaults filled in, unset JSON columns SQL NULL."""

from __future__ import annotations

from sqlalchemy import select

from jobsys.context import Context
from jobsys.store.inserts import insert_rows, job_rows
from jobsys.store.models import Job, JobTag, Step, StepItems, TaskRun, new_id, utcnow


def a_job() -> Job:
    job = Job(id=new_id(), name="n", spec={"tags": ["a"]}, created_at=utcnow())
    job.tag_rows = [JobTag(job_id=job.id, tag="a", created_at=job.created_at)]
    step = Step(id=new_id(), job_id=job.id, position=0, kind="function", spec={})
    step.payload = StepItems(step_id=step.id, items=[1, 2])
    job.steps = [step]
    return job


def test_unset_columns_get_their_defaults_on_the_row_and_the_object(ctx: Context) -> None:
    job = a_job()
    with ctx.sessions.begin() as s:
        insert_rows(s, job_rows(job))
    step = job.steps[0]
    assert (job.status, job.owner, step.status, step.total_tasks, step.done_tasks) == (
        "queued",
        "",
        "queued",
        1,
        0,
    )
    with ctx.sessions() as s:
        stored = s.get_one(Job, job.id)
        assert (stored.status, stored.owner, [t.tag for t in stored.tag_rows]) == (
            "queued",
            "",
            ["a"],
        )
        assert [(x.status, x.total_tasks, x.payload.items) for x in stored.steps] == [
            ("queued", 1, [1, 2])
        ]


def test_an_unset_json_column_is_sql_null_not_json_null(ctx: Context) -> None:
    job = a_job()
    step = job.steps[0]
    runs = [
        TaskRun(id=new_id(), job_id=job.id, step_id=step.id),
        # Another set of columns in the same table goes in its own batch.
        TaskRun(id=new_id(), job_id=job.id, step_id=step.id, chunk_index=1, results=[{"ok": 1}]),
    ]
    with ctx.sessions.begin() as s:
        insert_rows(s, [*job_rows(job), *runs])
    with ctx.sessions() as s:
        unset = list(s.scalars(select(TaskRun.id).where(TaskRun.results.is_(None))))
        assert unset == [runs[0].id]
        assert s.scalar(select(Job.variables.is_(None)).where(Job.id == job.id)) is True
        assert s.get_one(TaskRun, runs[1].id).results == [{"ok": 1}]
        assert s.get_one(TaskRun, runs[0].id).state == "pending"
