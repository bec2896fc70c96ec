"""initial: the schema as jobsys made it before migrations, with ``create_all``.

Written by hand to match what ``Base.metadata.create_all`` built from the models
of commit d60a991 (same tables, columns, keys and index names), so that a
database from that time is recognised as this revision and stamped, not rebuilt.
Column defaults live in Python, not in the database, as they did then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _moment(name: str, *, nullable: bool = True) -> sa.Column[object]:
    """A time column: ``UTCDateTime`` keeps naive UTC in a plain DateTime."""
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rerun_of", sa.String(32), nullable=True),
        sa.Column("template", sa.String(100), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=True),
        _moment("created_at", nullable=False),
        _moment("started_at"),
        _moment("finished_at"),
        sa.ForeignKeyConstraint(["rerun_of"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at", "id"])
    op.create_index("ix_jobs_owner_created", "jobs", ["owner", "created_at", "id"])
    op.create_index("ix_jobs_template_created", "jobs", ["template", "created_at", "id"])
    op.create_index("ix_jobs_name", "jobs", ["name", "created_at"])

    op.create_table(
        "steps",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("total_tasks", sa.Integer(), nullable=False),
        sa.Column("done_tasks", sa.Integer(), nullable=False),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("failed_items", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _moment("dispatched_at"),
        _moment("started_at"),
        _moment("finished_at"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_steps_job_position", "steps", ["job_id", "position"], unique=True)
    op.create_index("ix_steps_outbox", "steps", ["status", "dispatched_at"])

    op.create_table(
        "task_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("step_id", sa.String(32), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("item_start", sa.Integer(), nullable=False),
        sa.Column("item_stop", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("failed_items", sa.Integer(), nullable=False),
        _moment("started_at"),
        _moment("finished_at"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_runs_job", "task_runs", ["job_id", "step_id", "chunk_index"])

    op.create_table(
        "log_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("step_id", sa.String(32), nullable=True),
        _moment("ts", nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_log_lines_job", "log_lines", ["job_id", "id"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        _moment("created_at", nullable=False),
        _moment("last_login_at"),
        _moment("disabled_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(255), nullable=False),
        _moment("created_at", nullable=False),
        _moment("last_used_at"),
        _moment("revoked_at"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
    )

    op.create_table(
        "schedules",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("interval_s", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("template", sa.String(100), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=True),
        sa.Column("catch_up", sa.String(8), nullable=False),
        sa.Column("catch_up_window_s", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("owner_role", sa.String(32), nullable=False),
        _moment("next_fire_at"),
        _moment("last_fire_at"),
        _moment("created_at", nullable=False),
        _moment("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_schedules_due", "schedules", ["enabled", "next_fire_at"])

    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(32), nullable=False),
        _moment("tick", nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        _moment("fired_at", nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "tick", name="uq_schedule_runs_tick"),
    )
    op.create_index("ix_schedule_runs_history", "schedule_runs", ["schedule_id", "fired_at"])

    op.create_table(
        "catalog",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _moment("loaded_at", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _moment("ts", nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"])
    op.create_index("ix_audit_actor_ts", "audit", ["actor", "ts"])
    op.create_index("ix_audit_action_ts", "audit", ["action", "ts"])


def downgrade() -> None:
    for table in (
        "audit",
        "catalog",
        "schedule_runs",
        "schedules",
        "tokens",
        "users",
        "log_lines",
        "task_runs",
        "steps",
        "jobs",
    ):
        op.drop_table(table)
