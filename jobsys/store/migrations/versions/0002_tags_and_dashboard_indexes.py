"""tags and dashboard indexes: job_tags, and the finished-time and task-state indexes.

``job_tags`` holds a job's ``spec["tags"]`` as rows so the list can filter by tag
through an index. Before this revision a spec with tags was refused, so no
database should hold any; the backfill still copies any it finds, because a
job whose tags are in its spec but not in ``job_tags`` would silently drop out
of tag filters. It reads jobs in id order, a batch at a time, and parses the
JSON in Python: JSON operators differ between SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000
#: The longest tag the column holds (and the spec parser has always allowed).
TAG_LENGTH = 64

# Frozen copies of the columns this revision touches; never the live models,
# which move on while this file must keep doing what it did.
jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("spec", sa.JSON),
    sa.column("created_at", sa.DateTime),
)
job_tags = sa.table(
    "job_tags",
    sa.column("job_id", sa.String),
    sa.column("tag", sa.String),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("tag", sa.String(TAG_LENGTH), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "tag"),
    )
    op.create_index("ix_job_tags_tag_created", "job_tags", ["tag", "created_at", "job_id"])
    op.create_index("ix_jobs_finished", "jobs", ["finished_at", "id"])
    op.create_index("ix_task_runs_state", "task_runs", ["state"])
    op.create_index("ix_task_runs_finished", "task_runs", ["finished_at"])
    _backfill_tags()


def downgrade() -> None:
    op.drop_index("ix_task_runs_finished", table_name="task_runs")
    op.drop_index("ix_task_runs_state", table_name="task_runs")
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_table("job_tags")


def _backfill_tags() -> None:
    conn = op.get_bind()
    after = ""
    while True:
        batch = conn.execute(
            sa.select(jobs.c.id, jobs.c.spec, jobs.c.created_at)
            .where(jobs.c.id > after)
            .order_by(jobs.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        rows = [
            {"job_id": job_id, "tag": tag, "created_at": created_at}
            for job_id, spec, created_at in batch
            for tag in tags_of(spec)
        ]
        if rows:
            conn.execute(job_tags.insert(), rows)
        after = batch[-1].id


def tags_of(spec: Any) -> list[str]:
    """The tags a stored spec names, without repeats; anything that is not a
    tag the column can hold is left in the spec and out of the index."""
    raw = spec.get("tags") if isinstance(spec, dict) else None
    if not isinstance(raw, list):
        return []
    tags = [t for t in raw if isinstance(t, str) and 0 < len(t) <= TAG_LENGTH]
    return list(dict.fromkeys(tags))
