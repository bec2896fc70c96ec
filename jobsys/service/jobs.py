"""Submitting and reading jobs: what the web UI, API, CLI and scheduler all call."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, defer

from jobsys.auth import Principal, Right, require, require_somewhere
from jobsys.context import Context
from jobsys.envelope import is_pickled, sign_wire, unsign_for_wire
from jobsys.errors import DispatchError, NotFoundError, SignatureError, SpecError, StateError
from jobsys.service.audit import audit_entry
from jobsys.service.dispatching import claim_new_step, dispatch_step, publish_claimed
from jobsys.service.holds import start_hold
from jobsys.service.idempotency import Idempotency, store_job
from jobsys.service.projects import named_project, new_object_project
from jobsys.service.records import JobInfo, LogEntry, ResultStream, StepInfo, TaskInfo
from jobsys.service.scope import all_if_every, in_projects
from jobsys.service.secrets import check_secret_use, secret_names
from jobsys.service.worker_slots import function_slots
from jobsys.signing import Binding, Purpose
from jobsys.specs import (
    DockerStep,
    FunctionStep,
    JobSpec,
    chunk_bounds,
    chunk_size_for,
    parse_job_spec,
    secret_refs,
    step_to_dict,
)
from jobsys.states import JobStatus
from jobsys.store.models import Job, JobTag, LogLine, Step, StepItems, TaskRun, new_id, utcnow

log = logging.getLogger(__name__)

MAX_LOG_TAIL = 10_000
#: Item outcomes per results page: by default, and at most (a page is one answer).
RESULTS_PAGE = 1_000
MAX_RESULTS_PAGE = 20_000
#: The most outcomes an answer about a job's end may carry (``first_results``).
MAX_INLINE_RESULTS = 100


def submit_job(
    ctx: Context, principal: Principal, data: Any, *, once: Idempotency | None = None
) -> JobInfo:
    """Validate, store, then publish a job. Returns it ``queued`` even when the
    broker is down: the row is committed first and the outbox sweep publishes it.
    With ``once`` (an Idempotency-Key), a repeat of an earlier request gets that
    request's job back, marked ``replayed``, and nothing new is stored or sent."""
    job = new_job(ctx, principal, data)
    entry = audit_entry(
        principal, "job.submit", job.id, detail=job_detail(job), project=job.project
    )
    # One commit for the job, its first step's claim and its audit entry: every
    # commit is a turn at SQLite's write lock (and a round trip). A held job's
    # step is not claimed: beat releases it (service.holds).
    plan, rows = None, [entry]
    if job.waiting is None:
        plan, task_rows = claim_new_step(job.steps[0])
        rows = [*task_rows, entry]
    earlier = store_job(ctx, principal, job, once, alongside=rows)
    if earlier is not None:
        return replace(get_job(ctx, principal, earlier), replayed=True)
    if plan is not None:
        publish_claimed(ctx, plan)  # refused: logged, and the outbox has the step
    # The rows just committed are the job as stored: no need to read them back.
    return JobInfo.of(job)


def new_job(
    ctx: Context,
    principal: Principal,
    data: Any,
    *,
    right: Right = Right.SUBMIT,
    code_owner: str | None = None,
    session: Session | None = None,
    project: str | None = None,
) -> Job:
    """A validated, unsaved job row with its steps, for a caller that stores it in
    its own transaction (the scheduler stores it together with the tick it fires).

    Every door that makes a job from a spec comes here, with today's settings and
    the rights of the principal who creates the job: a new spec needs ``submit``;
    one someone already vetted (a rerun, resume or run-now of a stored spec) needs
    ``right`` (``rerun``) instead. Pickled code needs ``submit_code`` of the
    creator either way: only a developer runs code. ``code_owner`` is who supplied
    that code (a rerun keeps the first submitter); by default the creator.
    The job goes into ``project`` (a rerun's is its first job's), else the
    spec's ``"project"``, else the caller's default (``acting_project``); every
    right is checked there. Inside a caller's transaction, pass its ``session``
    (on SQLite a second one would wait on the first's write lock)."""
    if project is None:
        project = new_object_project(ctx, principal, named_project(data), right, session=session)
    require(principal, right, project)
    spec = parse_job_spec(data, ctx.settings)
    if _carries_code(spec):
        require(principal, Right.SUBMIT_CODE, project)
    # A new spec may name only the secrets the creator's role may use; one already
    # vetted (a rerun) only secrets that still exist.
    user = principal if right is Right.SUBMIT else None
    check_secret_use(ctx, secret_refs(spec), user, session=session, project=project)
    return _job_row(
        ctx, principal.name, spec, code_owner=code_owner or principal.name, project=project
    )


def build_job(
    ctx: Context, owner: str, data: Any, *, project: str, session: Session | None = None
) -> Job:
    """Like ``new_job`` for a spec that needs no ``submit`` right of its caller: a
    rendered catalog template of ``project``, which can hold no pickled code.
    ``owner`` (the starter, or a schedule's owner) is also its ``code_owner``."""
    spec = parse_job_spec(data, ctx.settings)
    if _carries_code(spec):
        raise SpecError({"steps": "a catalog template cannot carry pickled code"})
    # The template's author (an admin) chose its secrets: any of its project's will do.
    check_secret_use(ctx, secret_refs(spec), None, session=session, project=project)
    return _job_row(ctx, owner, spec, code_owner=owner, project=project)


def _job_row(ctx: Context, owner: str, spec: JobSpec, *, code_owner: str, project: str) -> Job:
    job = with_tags(
        Job(
            id=new_id(),
            project=project,
            name=spec.name,
            owner=owner,
            code_owner=code_owner,
            status=JobStatus.QUEUED.value,
            spec=_public_spec(spec),
            not_before=spec.not_before,
            waiting=start_hold(spec.not_before),
        )
    )
    # Ids first: the caller publishes by them, and each pickle is signed for its step.
    job.steps = [_step_row(ctx, job.id, new_id(), i, step) for i, step in enumerate(spec.steps)]
    return job


def job_detail(job: Job) -> dict[str, Any]:
    """What the audit entry of a new job says: its name, and the secrets it uses (names only)."""
    detail: dict[str, Any] = {"name": job.name}
    used = secret_names(job.spec)
    if used:
        detail["secrets"] = used
    return detail


def with_tags(job: Job) -> Job:
    """Give a new job row its creation time and the tag rows of its spec's tags."""
    job.created_at = job.created_at or utcnow()
    job.tag_rows = [
        JobTag(job_id=job.id, tag=t, created_at=job.created_at) for t in job.spec.get("tags", [])
    ]
    return job


def publish_job(ctx: Context, first_step_id: str) -> None:
    """Hand a stored job's first step to the broker; when that fails the outbox has it."""
    try:
        dispatch_step(ctx, first_step_id)
    except DispatchError as exc:
        log.warning("step %s stays queued until the broker is back: %s", first_step_id, exc)


def _carries_code(spec: JobSpec) -> bool:
    return any(
        isinstance(step, FunctionStep)
        and (is_pickled(step.function) or any(is_pickled(item) for item in step.items))
        for step in spec.steps
    )


def _public_spec(spec: JobSpec) -> dict[str, Any]:
    """The spec as shown to readers: pickles and long item lists summarised, and
    in the JSON shapes the database hands back (lists, not tuples), so the job a
    submit returns equals the job a read returns."""
    data = spec.to_dict()
    for step in data["steps"]:
        if step["kind"] == "function":
            if is_pickled(step["function"]):
                step["function"] = "<pickled callable>"
            step["items"] = f"<{len(step['items'])} items>"
    normal: dict[str, Any] = json.loads(json.dumps(data))
    return normal


def _step_row(
    ctx: Context, job_id: str, step_id: str, position: int, step: DockerStep | FunctionStep
) -> Step:
    stored = step_to_dict(step)
    if isinstance(step, DockerStep):
        return Step(
            id=step_id, job_id=job_id, position=position, kind="docker", spec=stored, total_tasks=1
        )
    path = f"steps[{position}]"
    stored["function"] = sign_wire(
        step.function,
        ctx.signer,
        f"{path}.function",
        Binding(Purpose.FUNCTION, job_id, step_id),
    )
    for_items = Binding(Purpose.ITEMS, job_id, step_id)
    items = [
        sign_wire(item, ctx.signer, f"{path}.items", for_items) for item in stored.pop("items")
    ]
    stored["chunk_size"] = chunk_size_for(step, ctx.settings, function_slots(ctx))
    n_chunks = len(chunk_bounds(len(step.items), stored["chunk_size"]))
    return Step(
        id=step_id,
        job_id=job_id,
        position=position,
        kind="function",
        spec=stored,
        total_tasks=n_chunks,
        total_items=len(step.items),
        payload=StepItems(step_id=step_id, items=items),
    )


def get_job(ctx: Context, principal: Principal, job_id: str) -> JobInfo:
    require_somewhere(principal, Right.VIEW)
    with ctx.sessions.reading_connection() as conn:
        found = read_job_infos(conn, [job_id])
    if not found or not principal.can(Right.VIEW, found[0].project):
        raise NotFoundError(f"no job with id {job_id!r}")
    return found[0]


def visible_job(principal: Principal, job_id: str, project: str | None) -> str:
    """The project of a job the principal may see (``project`` None: there is no
    such job); NotFoundError otherwise, so another project's job does not leak."""
    if project is None or not principal.can(Right.VIEW, project):
        raise NotFoundError(f"no job with id {job_id!r}")
    return project


#: The columns a JobInfo shows: Core reads of these, not ORM objects, are what
#: a job read (and each waiter's wake) costs.
_JOB_COLUMNS = tuple(
    Job.__table__.c[name]
    for name in (
        "id", "name", "status", "owner", "spec", "error", "rerun_of", "created_at",
        "started_at", "finished_at", "template", "variables", "code_owner", "project",
        "waiting", "not_before",
    )
)  # fmt: skip
_STEP_COLUMNS = tuple(
    Step.__table__.c[name]
    for name in (
        "id", "job_id", "position", "kind", "status", "spec", "total_tasks", "done_tasks",
        "total_items", "failed_items", "attempts", "exit_code", "error", "started_at",
        "finished_at",
    )
)  # fmt: skip


def read_job_infos(session: Any, ids: list[str]) -> list[JobInfo]:
    """The jobs of ``ids`` (those that exist, in no set order) with their steps,
    by two Core selects of the columns shown: no ORM object graph (``session``
    may be a bare connection)."""
    if not ids:
        return []
    jobs = session.execute(_JOBS_BY_ID, {"b_ids": ids}).all()
    if not jobs:
        return []
    steps: dict[str, list[Any]] = {job.id: [] for job in jobs}
    for step in session.execute(_STEPS_OF_JOBS, {"b_jobs": list(steps)}):
        steps[step.job_id].append(step)
    return [JobInfo.of(job, steps[job.id]) for job in jobs]


# Built once: building a select and its IN list cost a third of a job read.
_JOBS_BY_ID = select(*_JOB_COLUMNS).where(
    Job.__table__.c.id.in_(bindparam("b_ids", expanding=True))
)
_STEPS_OF_JOBS = (
    select(*_STEP_COLUMNS)
    .where(Step.__table__.c.job_id.in_(bindparam("b_jobs", expanding=True)))
    .order_by(Step.__table__.c.job_id, Step.__table__.c.position)
)


def _require_job(session: Any, principal: Principal, job_id: str) -> None:
    project = session.scalar(select(Job.project).where(Job.id == job_id))
    visible_job(principal, job_id, project)


def job_tasks(ctx: Context, principal: Principal, job_id: str) -> list[TaskInfo]:
    require_somewhere(principal, Right.VIEW)
    with ctx.sessions.reading() as session:
        _require_job(session, principal, job_id)
        rows = session.scalars(
            select(TaskRun)
            .join(Step, Step.id == TaskRun.step_id)
            .where(TaskRun.job_id == job_id)
            .order_by(Step.position, TaskRun.item_start, TaskRun.chunk_index)
            .options(defer(TaskRun.results))  # a chunk's outcomes: not for the task list
        )
        return [TaskInfo.of(r) for r in rows]


def job_logs(
    ctx: Context, principal: Principal, job_id: str, *, tail: int | None = None
) -> list[LogEntry]:
    """Stored log lines in order; ``tail`` keeps only the last N."""
    require_somewhere(principal, Right.VIEW)
    if tail is not None and not 1 <= tail <= MAX_LOG_TAIL:
        raise SpecError({"tail": f"give a number from 1 to {MAX_LOG_TAIL}"})
    with ctx.sessions.reading() as session:
        _require_job(session, principal, job_id)
        query = select(LogLine).where(LogLine.job_id == job_id)
        if tail:
            rows = list(session.scalars(query.order_by(LogLine.id.desc()).limit(tail)))
            rows.reverse()
        else:
            rows = list(session.scalars(query.order_by(LogLine.id).limit(MAX_LOG_TAIL)))
        return [LogEntry.of(r) for r in rows]


def job_results(
    ctx: Context,
    principal: Principal,
    job_id: str,
    *,
    offset: int = 0,
    limit: int = RESULTS_PAGE,
) -> dict[str, Any]:
    """One page ``[offset, offset + limit)`` of the item outcomes of the job's last
    function step, in item order. It reads only the chunks the page overlaps and
    verifies only the values it returns, so a job of a million items costs a
    page's worth, never the whole set; ``next_offset`` is where the next page
    starts (None after the last).

    ``trusted`` tells the caller whether the pickled values are safe *for them*
    to unpickle: only when they supplied the job's code (``code_owner``, kept
    through reruns, resumes and firings). Unpickling runs code, and a pickle a
    function of someone else returned can run anything on the reader's machine."""
    require_somewhere(principal, Right.VIEW)
    check_page(offset, limit)
    with ctx.sessions.reading() as session:
        job, step = _results_step(session, principal, job_id)
        return _page(ctx, principal, session, job, step, offset, limit)


def first_results(
    ctx: Context, principal: Principal, jobs: Sequence[JobInfo], limit: Any
) -> dict[str, dict[str, Any]]:
    """The first page (``limit`` outcomes, 1 to ``MAX_INLINE_RESULTS``) of each
    of ``jobs`` that has ended with item results, by job id, read in one session;
    a job without (still open, no function step, or purged meanwhile) is left out.

    The answers that tell a caller a job ended (``?wait=`` and ``POST
    /api/jobs/wait``) carry it on request (``results=N``), so a one-call job
    costs its submit and one wait, not a third request for a one-item page."""
    require_somewhere(principal, Right.VIEW)
    check_inline_results(limit)
    # The job as the caller just read it says which step holds the results
    # and how many: only the outcomes are read, in one query per job.
    found = [
        (info, step)
        for info in jobs
        if JobStatus(info.status).finished
        and principal.can(Right.VIEW, info.project)
        and (step := _results_step_of(info)) is not None
        and JobStatus(step.status).finished
    ]
    pages: dict[str, dict[str, Any]] = {}
    if not found:
        return pages
    with ctx.sessions.reading_connection() as conn:
        for info, step in found:
            pages[info.id] = _page(ctx, principal, conn, info, step, 0, limit)
    return pages


def _results_step_of(info: JobInfo) -> StepInfo | None:
    """The step whose outcomes are the job's results: its last function step."""
    return next((s for s in reversed(info.steps) if s.kind == "function"), None)


def check_inline_results(limit: Any) -> None:
    """SpecError unless ``limit`` is a count ``first_results`` serves: callers
    check it before they wait, so bad input is refused at once."""
    if (
        not isinstance(limit, int)
        or isinstance(limit, bool)
        or not 1 <= limit <= MAX_INLINE_RESULTS
    ):
        raise SpecError(
            {
                "results": f"give how many outcomes to include, from 1 to {MAX_INLINE_RESULTS}; "
                "read more from /api/jobs/<id>/results"
            }
        )


def _page(
    ctx: Context, principal: Principal, session: Any, job: Any, step: Any, offset: int, limit: int
) -> dict[str, Any]:
    """A results page: ``job`` has the job's ``id`` and ``code_owner``, ``step``
    the results step's ``id``, ``position``, ``status`` and item counts."""
    stop = min(step.total_items, offset + limit)
    return {
        **_results_head(principal, job, step),
        "offset": offset,
        "limit": limit,
        "next_offset": stop if stop < step.total_items else None,
        "results": _outcomes(ctx, session, job.id, step.id, offset, stop),
    }


def check_page(offset: int, limit: int) -> None:
    """SpecError unless ``[offset, offset + limit)`` is a page ``job_results`` serves."""
    if offset < 0:
        raise SpecError({"offset": "give a number from 0 up"})
    if not 1 <= limit <= MAX_RESULTS_PAGE:
        raise SpecError({"limit": f"give a number from 1 to {MAX_RESULTS_PAGE:,} (the maximum)"})


def stream_job_results(
    ctx: Context, principal: Principal, job_id: str, *, page: int = RESULTS_PAGE
) -> ResultStream:
    """All of a job's item outcomes as a ``ResultStream`` (each page in its own
    short session, so no transaction stays open while a slow reader downloads)."""
    require_somewhere(principal, Right.VIEW)
    with ctx.sessions() as session:
        job, step = _results_step(session, principal, job_id)
        head = _results_head(principal, job, step)
        step_id, total = step.id, step.total_items

    def pages() -> Iterator[list[dict[str, Any]]]:
        for offset in range(0, total, page):
            with ctx.sessions() as session:
                found = session.get(Step, step_id)
                if found is None:  # purged while it was being read
                    raise NotFoundError(f"job {job_id} was deleted while it was read")
                yield _outcomes(ctx, session, job_id, step_id, offset, min(total, offset + page))

    return ResultStream(head=head, pages=pages())


def _results_step(session: Any, principal: Principal, job_id: str) -> tuple[Any, Any]:
    """The job and the function step whose outcomes are its results, once it
    ended: rows of the columns a results page needs only. Not the ORM objects:
    their JSON specs (a function step's holds the signed callable and every
    item) were most of a small page's time, and grow with the job."""
    job = session.execute(
        select(Job.id, Job.code_owner, Job.project).where(Job.id == job_id)
    ).first()
    visible_job(principal, job_id, job.project if job is not None else None)
    step = session.execute(
        select(
            Step.id,
            Step.job_id,
            Step.position,
            Step.status,
            Step.total_items,
            Step.failed_items,
        )
        .where(Step.job_id == job_id, Step.kind == "function")
        .order_by(Step.position.desc())
        .limit(1)
    ).first()
    if step is None:
        raise NotFoundError(f"job {job_id} has no function step, so no item results")
    if not JobStatus(step.status).finished:
        raise StateError(f"step {step.position} is {step.status}; wait for the job to end")
    return job, step


def _results_head(principal: Principal, job: Any, step: Any) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "step": step.position,
        "status": step.status,
        "total": step.total_items,
        "failed": step.failed_items,
        "code_owner": job.code_owner,
        "trusted": job.code_owner is not None and job.code_owner == principal.name,
    }


def _outcomes(
    ctx: Context, session: Any, job_id: str, step_id: str, offset: int, stop: int
) -> list[dict[str, Any]]:
    """Outcomes ``[offset, stop)`` of the step, from the chunks that overlap them
    only (the columns a page needs, not whole task rows)."""
    if offset >= stop:
        return []
    runs = session.execute(_PAGE_RUNS, {"b_step": step_id, "b_offset": offset, "b_stop": stop})
    # A result blob serves only the step it was signed for: one copied in from
    # another job's rows is refused here, before a client that trusts this
    # job's code owner would unpickle it.
    binding = Binding(Purpose.RESULT, job_id, step_id)
    results: list[dict[str, Any]] = []
    for run in runs:
        outcomes: list[Any] = list(run.results or [])
        # A chunk that never produced results still holds its place in item order.
        outcomes += [_missing(run)] * (run.item_stop - run.item_start - len(outcomes))
        low, high = max(offset, run.item_start), min(stop, run.item_stop)
        results.extend(
            _served(ctx, o, binding) if o["ok"] else o
            for o in outcomes[low - run.item_start : high - run.item_start]
        )
    return results


#: Built once, as the job reads are: every results page (and inline page) runs it.
_PAGE_RUNS = (
    select(
        TaskRun.chunk_index,
        TaskRun.item_start,
        TaskRun.item_stop,
        TaskRun.state,
        TaskRun.error,
        TaskRun.results,
    )
    .where(
        TaskRun.step_id == bindparam("b_step"),
        TaskRun.item_stop > bindparam("b_offset"),
        TaskRun.item_start < bindparam("b_stop"),
    )
    .order_by(TaskRun.item_start)
)


def _served(ctx: Context, outcome: dict[str, Any], binding: Binding) -> dict[str, Any]:
    """A stored outcome as readers get it: a value whose signature fails (altered,
    or moved in from another job) is served as that item's error, never as a
    value, and the rest of the page still reads."""
    try:
        value = unsign_for_wire(
            outcome["value"], ctx.signer, binding, legacy=ctx.settings.accept_legacy_signatures
        )
    except SignatureError as exc:
        return {
            "ok": False,
            "error": {"type": "SignatureError", "message": exc.message, "traceback": ""},
        }
    return {**outcome, "value": value}


def _missing(run: Any) -> dict[str, Any]:
    message = run.error or f"chunk {run.chunk_index} did not run ({run.state})"
    return {"ok": False, "error": {"type": "ChunkError", "message": message, "traceback": ""}}


def job_stats(ctx: Context, principal: Principal) -> dict[str, Any]:
    """Job counts by status in the caller's projects, and the queues' lengths
    (the queues are shared by every project: their lengths say nothing of a job)."""
    visible = require_somewhere(principal, Right.VIEW)
    query = select(Job.status, func.count()).group_by(Job.status)
    with ctx.sessions.reading() as session:
        query = in_projects(query, Job.project, all_if_every(session, visible))
        counts = dict(session.execute(query).all())
    stats: dict[str, Any] = {
        "jobs": {s.value: counts.get(s.value, 0) for s in JobStatus},
        "queues": None,
        "broker": "ok",
    }
    try:
        stats["queues"] = ctx.dispatcher.queue_lengths()
    except DispatchError as exc:
        stats["broker"] = exc.message
    return stats
