"""A database as jobsys stored it at migration 0001, with a row in every table,
and the checks that an upgrade kept every row and that the app works on it.

The rows go in through plain Core against the 0001 tables, not the models:
the models are the newest schema, and the point is data written before it.
Shared by the SQLite (unit) and PostgreSQL (integration) migration tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, select
from werkzeug.security import generate_password_hash

from jobsys import service
from jobsys.auth import SYSTEM, hash_secret
from jobsys.context import Context
from jobsys.service.job_list import JobFilter
from jobsys.store.models import Step
from jobsys.store.schema import upgrade_schema

#: Stored as the app stored it: naive UTC.
T0 = datetime(2026, 11, 1, 8, 0, 0)
PASSWORD = "correct horse battery"
TOKEN_KEY = "a1b2c3d4e5f6"
TOKEN = f"jst_{TOKEN_KEY}.the-secret-part-of-the-token"
TABLES_0001 = (
    "jobs",
    "steps",
    "task_runs",
    "log_lines",
    "users",
    "tokens",
    "schedules",
    "schedule_runs",
    "catalog",
    "audit",
)
DOCKER = {"kind": "docker", "image": "jobsys/busybox:local", "command": ["sh", "-c", "echo hi"]}


def _t(name: str, *columns: str, json: tuple[str, ...] = (), times: tuple[str, ...] = ()) -> Any:
    typed = [sa.column(c, sa.JSON) for c in json] + [sa.column(c, sa.DateTime) for c in times]
    return sa.table(name, *[sa.column(c) for c in columns], *typed)


def seed_0001(conn: Connection) -> None:
    """One of everything: jobs (one rerun of another, one from a template, one
    whose spec names tags), steps, tasks, log lines, a user with a token, a
    schedule that has fired, a catalog entry and audit entries."""
    jobs = _t(
        "jobs",
        "id",
        "name",
        "status",
        "owner",
        "error",
        "rerun_of",
        "template",
        json=("spec", "variables"),
        times=("created_at", "started_at", "finished_at"),
    )
    job = {"error": None, "rerun_of": None, "template": None, "variables": None}
    conn.execute(
        jobs.insert(),
        [
            {
                **job,
                "id": "j1" * 16,
                "name": "nightly",
                "status": "completed",
                "owner": "ann",
                # Tags were refused before 0002; this one shows the backfill works anyway.
                "spec": {"name": "nightly", "steps": [DOCKER], "tags": ["etl", "team=data", "etl"]},
                "created_at": T0,
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=9),
            },
            {
                **job,
                "id": "j2" * 16,
                "name": "adhoc",
                "status": "failed",
                "owner": "bob",
                "spec": {"name": "adhoc", "steps": [DOCKER]},
                "error": "step 0 exited with code 3",
                "created_at": T0 + timedelta(hours=1),
                "started_at": T0 + timedelta(hours=1, seconds=1),
                "finished_at": T0 + timedelta(hours=1, seconds=4),
            },
            {
                **job,
                "id": "j3" * 16,
                "name": "adhoc",
                "status": "queued",
                # cat reran bob's job: the code is still bob's (0005's code_owner).
                "owner": "cat",
                "spec": {"name": "adhoc", "steps": [DOCKER]},
                "rerun_of": "j2" * 16,
                "template": "hello",
                "variables": {"who": "world"},
                "created_at": T0 + timedelta(hours=2),
                "started_at": None,
                "finished_at": None,
            },
        ],
    )
    steps = _t(
        "steps",
        "id",
        "job_id",
        "position",
        "kind",
        "status",
        "total_tasks",
        "done_tasks",
        "total_items",
        "failed_items",
        "attempts",
        "exit_code",
        "error",
        json=("spec",),
        times=("dispatched_at", "started_at", "finished_at"),
    )
    counts = {"total_tasks": 1, "done_tasks": 1, "total_items": 0, "failed_items": 0}
    conn.execute(
        steps.insert(),
        [
            {
                **counts,
                "id": "s1" * 16,
                "job_id": "j1" * 16,
                "position": 0,
                "kind": "docker",
                "status": "completed",
                "spec": DOCKER,
                "attempts": 1,
                "exit_code": 0,
                "error": None,
                "dispatched_at": T0,
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=5),
            },
            {
                **counts,
                "id": "s2" * 16,
                "job_id": "j1" * 16,
                "position": 1,
                "kind": "function",
                "status": "completed",
                "spec": {"kind": "function", "function": "math:sqrt", "items": [1, 4]},
                "total_items": 2,
                "attempts": 1,
                "exit_code": None,
                "error": None,
                "dispatched_at": T0 + timedelta(seconds=5),
                "started_at": T0 + timedelta(seconds=6),
                "finished_at": T0 + timedelta(seconds=9),
            },
            {
                **counts,
                "id": "s3" * 16,
                "job_id": "j2" * 16,
                "position": 0,
                "kind": "docker",
                "status": "failed",
                "spec": DOCKER,
                "attempts": 1,
                "exit_code": 3,
                "error": "exited with code 3",
                "dispatched_at": T0 + timedelta(hours=1),
                "started_at": T0 + timedelta(hours=1, seconds=1),
                "finished_at": T0 + timedelta(hours=1, seconds=4),
            },
            {
                **counts,
                "id": "s4" * 16,
                "job_id": "j3" * 16,
                "position": 0,
                "kind": "docker",
                "status": "queued",
                "spec": DOCKER,
                "done_tasks": 0,
                "attempts": 0,
                "exit_code": None,
                "error": None,
                "dispatched_at": None,
                "started_at": None,
                "finished_at": None,
            },
        ],
    )
    task_runs = _t(
        "task_runs",
        "id",
        "job_id",
        "step_id",
        "chunk_index",
        "item_start",
        "item_stop",
        "state",
        "worker",
        "attempt",
        "error",
        "failed_items",
        json=("results",),
        times=("started_at", "finished_at"),
    )
    run = {"chunk_index": 0, "item_start": 0, "item_stop": 0, "attempt": 1, "failed_items": 0}
    conn.execute(
        task_runs.insert(),
        [
            {
                **run,
                "id": "task-1",
                "job_id": "j1" * 16,
                "step_id": "s1" * 16,
                "state": "completed",
                "worker": "docker@host",
                "error": None,
                "results": None,
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=5),
            },
            {
                **run,
                "id": "task-2",
                "job_id": "j1" * 16,
                "step_id": "s2" * 16,
                "item_stop": 2,
                "state": "completed",
                "worker": "python@host",
                "error": None,
                "results": [{"ok": 1.0}, {"ok": 2.0}],
                "started_at": T0 + timedelta(seconds=6),
                "finished_at": T0 + timedelta(seconds=9),
            },
            {
                **run,
                "id": "task-3",
                "job_id": "j2" * 16,
                "step_id": "s3" * 16,
                "state": "failed",
                "worker": "docker@host",
                "error": "exited with code 3",
                "results": None,
                "started_at": T0 + timedelta(hours=1, seconds=1),
                "finished_at": T0 + timedelta(hours=1, seconds=4),
            },
        ],
    )
    log_lines = _t("log_lines", "job_id", "step_id", "stream", "line", times=("ts",))
    for i, (job_id, step_id, stream, line) in enumerate(
        [
            ("j1", "s1", "stdout", "hi"),
            ("j1", "s2", "stdout", "1.0"),
            ("j2", "s3", "stderr", "boom"),
        ]
    ):
        conn.execute(
            log_lines.insert().values(
                job_id=job_id * 16,
                step_id=step_id * 16,
                stream=stream,
                line=line,
                ts=T0 + timedelta(seconds=i),
            )
        )
    users = _t(
        "users",
        "name",
        "password_hash",
        "role",
        times=("created_at", "last_login_at", "disabled_at"),
    )
    conn.execute(
        users.insert(),
        [
            {
                "name": name,
                "password_hash": generate_password_hash(PASSWORD),
                "role": role,
                "created_at": T0,
                "last_login_at": None,
                "disabled_at": None,
            }
            for name, role in (("ann", "developer"), ("root", "admin"))
        ],
    )
    user_id = conn.execute(sa.text("SELECT id FROM users WHERE name = 'ann'")).scalar_one()
    tokens = _t(
        "tokens",
        "name",
        "role",
        "user_id",
        "key_id",
        "token_hash",
        times=("created_at", "last_used_at", "revoked_at"),
    )
    conn.execute(
        tokens.insert().values(
            name="ann",
            role="developer",
            user_id=user_id,
            key_id=TOKEN_KEY,
            token_hash=hash_secret(TOKEN),
            created_at=T0,
            last_used_at=None,
            revoked_at=None,
        )
    )
    schedules = _t(
        "schedules",
        "id",
        "name",
        "description",
        "cron",
        "interval_s",
        "timezone",
        "template",
        "catch_up",
        "catch_up_window_s",
        "overlap",
        "enabled",
        "owner",
        "owner_role",
        json=("spec", "variables"),
        times=("next_fire_at", "last_fire_at", "created_at", "updated_at"),
    )
    conn.execute(
        schedules.insert().values(
            id="sc" * 16,
            name="nightly",
            description="the nightly run",
            cron="0 8 * * *",
            interval_s=None,
            timezone="UTC",
            spec={"name": "nightly", "steps": [DOCKER]},
            template=None,
            variables=None,
            catch_up="skip",
            catch_up_window_s=3600,
            overlap="skip",
            enabled=True,
            owner="ann",
            owner_role="developer",
            next_fire_at=T0 + timedelta(days=1),
            last_fire_at=T0,
            created_at=T0 - timedelta(days=1),
            updated_at=T0 - timedelta(days=1),
        )
    )
    schedule_runs = _t(
        "schedule_runs",
        "schedule_id",
        "trigger",
        "outcome",
        "job_id",
        "note",
        times=("tick", "fired_at"),
    )
    conn.execute(
        schedule_runs.insert().values(
            schedule_id="sc" * 16,
            tick=T0,
            trigger="schedule",
            outcome="submitted",
            job_id="j1" * 16,
            note=None,
            fired_at=T0,
        )
    )
    catalog = _t("catalog", "name", "source", "error", json=("definition",), times=("loaded_at",))
    conn.execute(
        catalog.insert().values(
            name="hello",
            source="jobs/hello/job.yaml",
            definition={"name": "hello", "steps": [DOCKER]},
            error=None,
            loaded_at=T0,
        )
    )
    audit = _t(
        "audit",
        "actor",
        "role",
        "action",
        "target",
        "outcome",
        "source",
        json=("detail",),
        times=("ts",),
    )
    conn.execute(
        audit.insert(),
        [
            {
                "ts": T0,
                "actor": "ann",
                "role": "developer",
                "action": "job.submit",
                "target": "j1" * 16,
                "outcome": "ok",
                "source": "127.0.0.1",
                "detail": {"name": "nightly"},
            },
            {
                "ts": T0 + timedelta(minutes=1),
                "actor": "eve",
                "role": "",
                "action": "login",
                "target": "eve",
                "outcome": "denied",
                "source": "127.0.0.1",
                "detail": None,
            },
        ],
    )


#: Columns later revisions add to 0001 tables (or, as ``users.role``, change on
#: purpose): not in a 0001 snapshot, checked on their own.
ADDED_LATER = {
    "jobs": ("code_owner", "project", "waiting", "not_before"),
    "schedules": ("code_owner", "project"),
    "tokens": ("expires_at", "project"),
    "catalog": ("project",),
    "audit": ("project",),
    "users": ("role", "oidc_subject"),
}


def snapshot(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every 0001 table, as the driver returns it, in key order;
    a step's spec with its items folded back in from ``step_items`` (0003)."""
    found = {
        table: [
            tuple(v for k, v in row.items() if k not in ADDED_LATER.get(table, ()))
            for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).mappings()
        ]
        for table in TABLES_0001
        if table != "steps"
    }
    moved: dict[str, Any] = {}
    if sa.inspect(conn).has_table("step_items"):
        moved = dict(conn.execute(sa.text("SELECT step_id, items FROM step_items")).all())
    steps = []
    for row in conn.execute(sa.text("SELECT * FROM steps ORDER BY 1")).mappings():
        spec = _json(row["spec"])
        if row["id"] in moved:
            spec = {**spec, "items": _json(moved[row["id"]])}
        steps.append(tuple(sorted({**row, "spec": spec}.items())))
    found["steps"] = steps
    return found


def _json(value: Any) -> Any:
    """SQLite hands JSON back as text, psycopg as Python values."""
    return json.loads(value) if isinstance(value, str) else value


def check_tags_backfilled(conn: Connection) -> None:
    rows = conn.execute(sa.text("SELECT job_id, tag FROM job_tags ORDER BY tag")).all()
    assert [tuple(r) for r in rows] == [("j1" * 16, "etl"), ("j1" * 16, "team=data")]
    created = conn.execute(
        sa.select(sa.column("created_at", sa.DateTime)).select_from(sa.table("job_tags"))
    ).scalars()
    assert set(created) == {T0}


def check_code_owner_backfilled(conn: Connection) -> None:
    """0005: a job's code owner is its own owner, and a rerun's is its parent's."""
    rows = conn.execute(sa.text("SELECT id, owner, code_owner FROM jobs ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [
        ("j1" * 16, "ann", "ann"),
        ("j2" * 16, "bob", "bob"),
        ("j3" * 16, "cat", "bob"),
    ]
    schedules = conn.execute(sa.text("SELECT owner, code_owner FROM schedules")).all()
    assert [tuple(r) for r in schedules] == [("ann", "ann")]


def check_projects_backfilled(conn: Connection) -> None:
    """0009: everything is in ``default``; admins became global admins, every
    other user's role moved to a membership of ``default``, and so did the
    tokens of non-admins."""
    for table in ("jobs", "schedules", "catalog"):
        found = conn.execute(sa.text(f"SELECT DISTINCT project FROM {table}")).scalars()
        assert list(found) == ["default"], table
    users = conn.execute(sa.text("SELECT name, role FROM users ORDER BY name")).all()
    assert [tuple(r) for r in users] == [("ann", ""), ("root", "admin")]
    members = conn.execute(
        sa.text(
            "SELECT m.project, u.name, m.role FROM project_members m "
            "JOIN users u ON u.id = m.user_id"
        )
    ).all()
    assert [tuple(r) for r in members] == [("default", "ann", "developer")]
    tokens = conn.execute(sa.text("SELECT name, role, project FROM tokens")).all()
    assert [tuple(r) for r in tokens] == [("ann", "developer", "default")]
    audit = conn.execute(sa.text("SELECT action, project FROM audit ORDER BY id")).all()
    assert [tuple(r) for r in audit] == [("job.submit", "default"), ("login", None)]


def at_0001_with_data(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Build the 0001 schema on ``engine``, seed it, and return its snapshot."""
    upgrade_schema(engine, "0001")
    with engine.begin() as conn:
        seed_0001(conn)
        return snapshot(conn)


def from_before_migrations(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """As ``create_all`` made it at d60a991: the 0001 tables with data and no
    version table; their snapshot."""
    before = at_0001_with_data(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
    return before


def check_rows_kept(conn: Connection, before: dict[str, list[tuple[Any, ...]]]) -> None:
    """Every 0001 row is as it was, and the later revisions backfilled theirs."""
    assert snapshot(conn) == before
    check_tags_backfilled(conn)
    check_code_owner_backfilled(conn)
    check_projects_backfilled(conn)


def check_app_works(ctx: Context) -> None:
    """The service layer reads the old rows and writes new ones with tags."""
    listed = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse({}))
    assert [j.id for j in listed.items] == ["j3" * 16, "j2" * 16, "j1" * 16]
    nightly = service.get_job(ctx, SYSTEM, "j1" * 16)
    assert [s.kind for s in nightly.steps] == ["docker", "function"]
    assert nightly.created_at == T0.replace(tzinfo=UTC)
    assert [t.id for t in service.job_tasks(ctx, SYSTEM, "j1" * 16)] == ["task-1", "task-2"]
    assert [e.line for e in service.job_logs(ctx, SYSTEM, "j1" * 16)] == ["hi", "1.0"]
    assert service.get_job(ctx, SYSTEM, "j3" * 16).rerun_of == "j2" * 16
    assert [s.name for s in service.list_schedules(ctx, SYSTEM)] == ["nightly"]
    ann = service.sign_in(ctx, "ann", PASSWORD)
    assert (ann.role, ann.role_in("default")) == ("", "developer")
    assert service.sign_in(ctx, "root", PASSWORD).role == "admin"
    assert service.authenticate(ctx, TOKEN).name == "ann"

    by_tag = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse({"tag": "etl"}))
    assert [j.id for j in by_tag.items] == ["j1" * 16]
    # 0006's (name, created_at, id) index serves the name search, newest first.
    searched = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse({"q": "ad"}))
    assert [j.id for j in searched.items] == ["j3" * 16, "j2" * 16] and searched.total_exact
    fresh = service.submit_job(
        ctx, SYSTEM, {"name": "tagged", "steps": [DOCKER], "tags": ["etl", "new"]}
    )
    by_tag = service.list_jobs(ctx, SYSTEM, where=JobFilter.parse({"tag": "etl"}))
    assert [j.id for j in by_tag.items] == [fresh.id, "j1" * 16]
    assert service.get_job(ctx, SYSTEM, fresh.id).tags == ("etl", "new")

    # 0008's secrets table: set one, and a new job names it.
    service.set_secret(ctx, SYSTEM, "stripe", "sk_live_migrated")
    assert service.reveal_secrets(ctx, SYSTEM, ["stripe"]) == {"stripe": "sk_live_migrated"}
    env = {"TOKEN": {"secret": "stripe"}}
    uses = service.submit_job(ctx, SYSTEM, {"name": "s", "steps": [{**DOCKER, "env": env}]})
    assert service.get_job(ctx, SYSTEM, uses.id).spec["steps"][0]["env"] == env

    with ctx.sessions() as session:  # 0003 moved the items out of the step row
        step = session.scalars(select(Step).where(Step.kind == "function")).one()
        assert step.payload is not None and step.payload.items == [1, 4]
        assert "items" not in step.spec and step.spec["function"] == "math:sqrt"
