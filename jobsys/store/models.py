"""Typed database models: the durable source of truth for every job.

Redis carries messages and results in flight; anything a user may ask about
later (status, results, logs) lives here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from jobsys.specs import DEFAULT_PROJECT
from jobsys.states import JobStatus, TaskState


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC and hands back aware UTC, the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    """A team's space: its jobs, templates, schedules, secrets, tokens and audit
    entries belong to it, and its members each have a role in it."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


# Every database has the default project from its first day: the migration that
# added projects made it, and a new database made by create_all makes it here.
event.listen(
    Project.__table__,
    "after_create",
    DDL(
        "INSERT INTO projects (name, description, created_at, created_by) "
        f"VALUES ('{DEFAULT_PROJECT}', '', CURRENT_TIMESTAMP, 'jobsys')"
    ),
)


class ProjectMember(Base):
    """A user's role in one project (``viewer``, ``operator``, ``developer``, ``admin``)."""

    __tablename__ = "project_members"

    project: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32))

    __table_args__ = (Index("ix_project_members_user", "user_id"),)


def _project(table: str, *, primary_key: bool = False) -> Any:
    """The project column of an object that always belongs to one. Its foreign
    key is named, as the migration that added it to existing tables named it."""
    return mapped_column(
        String(64),
        ForeignKey("projects.name", name=f"fk_{table}_project"),
        primary_key=primary_key,
        default=DEFAULT_PROJECT,
    )


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    owner: Mapped[str] = mapped_column(String(200), default="")
    #: The spec as submitted, minus the bulky step payloads (those live on Step).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    rerun_of: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None)
    #: The catalog template it was started from, and the variables it was given.
    template: Mapped[str | None] = mapped_column(String(100), default=None)
    variables: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Who supplied the code this job runs (its pickled function): the first
    #: submitter, kept through reruns, resumes and schedule firings. Clients
    #: unpickle results only for this principal (unpickling runs code).
    code_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The project it belongs to (columns added by a migration come last).
    project: Mapped[str] = _project("jobs")
    #: Why a queued job may not start yet, and where it stands:
    #: ``{"reason", "detail", "position"}`` (see ``service.holds``); None: nothing holds it.
    waiting: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    #: A start time it was given: it is held until then.
    not_before: Mapped[datetime | None] = mapped_column(default=None)

    steps: Mapped[list[Step]] = relationship(
        back_populates="job", order_by="Step.position", cascade="all, delete-orphan"
    )
    #: The spec's tags as rows, for the indexed tag filter (readers use ``spec["tags"]``).
    tag_rows: Mapped[list[JobTag]] = relationship(cascade="all, delete-orphan")

    __table_args__ = (
        # Each list filter with the list's order (created_at, id): pages stream
        # straight out of an index, with no sort of the matching rows.
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at", "id"),
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_template_created", "template", "created_at", "id"),
        # With id, a name search reads its matches' keys from the index alone.
        Index("ix_jobs_name_created", "name", "created_at", "id"),
        Index("ix_jobs_finished", "finished_at", "id"),
        # A project member's list: their project's jobs, newest first.
        Index("ix_jobs_project_created", "project", "created_at", "id"),
        # The held jobs whose start time has come (beat looks every second).
        Index("ix_jobs_start_due", "status", "not_before"),
    )


class JobTag(Base):
    """One tag of one job. ``created_at`` is the job's, copied so that a tag's
    jobs come newest first straight out of the (tag, created_at) index."""

    __tablename__ = "job_tags"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index("ix_job_tags_tag_created", "tag", "created_at", "job_id"),)


class Step(Base):
    __tablename__ = "steps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    #: The validated step spec; function steps hold the signed callable and items here.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    total_tasks: Mapped[int] = mapped_column(Integer, default=1)
    done_tasks: Mapped[int] = mapped_column(Integer, default=0)
    total_items: Mapped[int] = mapped_column(Integer, default=0)
    failed_items: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: Set when the step was handed to Celery; NULL steps of live jobs are the outbox.
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    job: Mapped[Job] = relationship(back_populates="steps")
    #: A function step's items, loaded only by the code that plans its chunks.
    payload: Mapped[StepItems | None] = relationship(cascade="all, delete-orphan")

    __table_args__ = (
        Index("ix_steps_job_position", "job_id", "position", unique=True),
        Index("ix_steps_outbox", "status", "dispatched_at"),
    )


class StepItems(Base):
    """A function step's signed item list, kept out of the step row: that row is
    updated once per finished chunk, and SQLite rewrites a whole row on update,
    so a million items stored in it were rewritten for each of a thousand chunks."""

    __tablename__ = "step_items"

    step_id: Mapped[str] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True
    )
    items: Mapped[list[Any]] = mapped_column(JSON)


class TaskRun(Base):
    """One Celery task of a step: the container run of a Docker step, or one chunk."""

    __tablename__ = "task_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the Celery task id
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer, default=0)
    item_start: Mapped[int] = mapped_column(Integer, default=0)
    item_stop: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=TaskState.PENDING.value)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: Per-item result envelopes of a chunk, in item order (see ``jobsys.envelope``).
    results: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    failed_items: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_task_runs_job", "job_id", "step_id", "chunk_index"),
        # A step's runs in item order: its end and its results pages.
        Index("ix_task_runs_step", "step_id", "item_start"),
        # The dashboard's running tasks and the last hour's ended ones.
        Index("ix_task_runs_state", "state"),
        Index("ix_task_runs_finished", "finished_at"),
    )


class LogLine(Base):
    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step_id: Mapped[str | None] = mapped_column(String(32), default=None)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    stream: Mapped[str] = mapped_column(String(16), default="stdout")
    line: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_log_lines_job", "job_id", "id"),)


class User(Base):
    """A person who signs in to the web UI; the password is kept as a scrypt hash.

    ``role`` is the global role, held in every project ("" for none: most users
    have roles per project, in ``project_members``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    #: ``<issuer> <sub>`` of a user who signs in through OpenID Connect: the
    #: provider's subject is the identity, never a name it sends (a name may
    #: already be a local user's).
    oidc_subject: Mapped[str | None] = mapped_column(String(512), default=None)

    __table_args__ = (UniqueConstraint("oidc_subject", name="uq_users_oidc_subject"),)


class Token(Base):
    """An API token, found by its key id; only a scrypt hash of its secret is
    stored, and the token itself is shown once."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    #: The user it acts for (disabling the user stops the token); none for service tokens.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: After this the token is refused (401 naming why); None: it does not expire.
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The project it acts in; None for a global token (global admins make those).
    project: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("projects.name", name="fk_tokens_project"), default=None
    )


class WebSession(Base):
    """A signed-in page session. The cookie carries only a random reference;
    this row (found by the reference's SHA-256) says whose session it is, and
    ending it ends the session wherever the cookie is (sign-out, password or
    role change, expiry)."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: A user who signed in with a password, or a token pasted on the sign-in page.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("tokens.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_web_sessions_user", "user_id"),
        Index("ix_web_sessions_token", "token_id"),
    )


class Schedule(Base):
    """A job to start on a cron line or an interval, edited at runtime.

    ``next_fire_at`` is the one number beat watches: the service sets it on
    every create, edit and enable, so beat notices changes on its next pass
    without keeping a copy of the schedule.
    """

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    #: Unique within its project.
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    cron: Mapped[str | None] = mapped_column(String(200), default=None)
    interval_s: Mapped[int | None] = mapped_column(Integer, default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: The job spec to submit, pickles kept signed (see ``service.schedules``).
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: Or a catalog template and its variables, rendered afresh at each tick.
    template: Mapped[str | None] = mapped_column(String(100), default=None)
    variables: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    catch_up: Mapped[str] = mapped_column(String(8), default="skip")
    catch_up_window_s: Mapped[int] = mapped_column(Integer, default=3600)
    #: ``skip``: no new run while this schedule's previous job is unfinished.
    overlap: Mapped[str] = mapped_column(String(8), default="skip")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    owner: Mapped[str] = mapped_column(String(200), default="")
    #: The role the owner had when they last saved it: jobs are submitted with it.
    owner_role: Mapped[str] = mapped_column(String(32), default="viewer")
    next_fire_at: Mapped[datetime | None] = mapped_column(default=None)
    last_fire_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Who supplied the stored spec's code: its fired jobs' ``code_owner``. Unlike
    #: ``owner`` it moves only when the spec does (an admin who just disables
    #: the schedule does not become the owner of someone else's code).
    code_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    project: Mapped[str] = _project("schedules")

    __table_args__ = (
        Index("ix_schedules_due", "enabled", "next_fire_at"),
        UniqueConstraint("project", "name", name="uq_schedules_project_name"),
    )


class ScheduleRun(Base):
    """One tick of a schedule and what came of it. The unique (schedule, tick)
    pair is what makes a tick fire once even if two schedulers both try."""

    __tablename__ = "schedule_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    tick: Mapped[datetime] = mapped_column()
    #: ``schedule`` (on time), ``catch-up`` (a missed tick) or ``manual`` (run now).
    trigger: Mapped[str] = mapped_column(String(16))
    #: ``submitted``, ``skipped`` (overlap) or ``failed`` (the spec no longer passes).
    outcome: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    note: Mapped[str | None] = mapped_column(Text, default=None)
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("schedule_id", "tick", name="uq_schedule_runs_tick"),
        Index("ix_schedule_runs_history", "schedule_id", "fired_at"),
    )


class CatalogEntry(Base):
    """One template of the catalog as last loaded from the catalog folder, or
    why it did not load. Kept in the database so every process (web, beat,
    workers) starts the same templates, whichever host read the folder."""

    __tablename__ = "catalog"

    project: Mapped[str] = _project("catalog", primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    #: The template file's content as loaded; None when it is broken.
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what, when and from where: every change, sign-in and refusal."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32), default="")
    #: e.g. ``job.submit``, ``schedule.update``, ``login``, ``denied``.
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    #: ``ok``, ``denied`` or ``failed``.
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    source: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: The project it happened in; None for what is global (users, projects, sign-ins).
    #: Not a foreign key: the trail outlives a deleted project.
    project: Mapped[str | None] = mapped_column(String(64), default=None)

    __table_args__ = (
        Index("ix_audit_ts", "ts"),
        Index("ix_audit_actor_ts", "actor", "ts"),
        Index("ix_audit_action_ts", "action", "ts"),
        Index("ix_audit_project_ts", "project", "ts"),
    )


class Secret(Base):
    """A named secret (an API token, a password) that jobs use without anyone seeing it.

    ``value`` is a Fernet token (AES-128-CBC with HMAC-SHA256) made with
    ``JOBSYS_SECRETS_KEY``: a copy of the database alone does not give the
    values. ``roles`` are those who may name it in a spec they submit.
    """

    __tablename__ = "secrets"

    project: Mapped[str] = _project("secrets", primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    roles: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Who set its value or its roles last.
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class IdempotencyKey(Base):
    """A caller's ``Idempotency-Key`` and the job its first request made, so a
    repeat (a retry after a timeout, say) gets that job back instead of a second.

    Written in the same transaction as the job: when two repeats race, the
    unique (principal, key) pair lets one commit and the other find its job.
    Rows older than a day are ignored and swept away (``service.retention``).
    """

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Keys are the caller's own: two callers may pick the same one.
    principal: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(255))
    #: sha256 of the request (route and canonical JSON body), to refuse a key reused for another.
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("principal", "key", name="uq_idempotency_keys_principal_key"),
        Index("ix_idempotency_keys_created", "created_at"),
    )
