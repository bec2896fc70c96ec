"""security: who supplied a job's code, token expiry, and server-side web sessions.

- ``jobs.code_owner`` names the principal whose code (pickled function) a job
  runs. Clients unpickle a job's results only for that principal, so it is
  carried along through reruns, resumes and schedules instead of being the
  person who reran it. The backfill walks each rerun chain back to its first
  job (in creation order, so a parent is always filled before its reruns) and
  uses that job's owner; a job with no rerun parent is its own owner's code.
- ``schedules.code_owner``, the same for a schedule's stored spec: it moves
  only when the spec does, so an edit of its timing keeps whose code it is.
  Backfilled with the schedule's owner.
- ``tokens.expires_at``: a token may carry an expiry (none for existing ones).
- ``web_sessions``: a page session's cookie holds a random reference to a row
  here, never an API token; ending the row ends the session (sign-out,
  password or role change, expiry).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 1000

# A frozen copy of the columns this revision reads and writes.
jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("owner", sa.String),
    sa.column("rerun_of", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("code_owner", sa.String),
)
schedules = sa.table(
    "schedules",
    sa.column("owner", sa.String),
    sa.column("code_owner", sa.String),
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("code_owner", sa.String(200), nullable=True))
    op.add_column("schedules", sa.Column("code_owner", sa.String(200), nullable=True))
    op.execute(schedules.update().values(code_owner=schedules.c.owner))
    op.add_column("tokens", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["token_id"], ["tokens.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user_id"])
    op.create_index("ix_web_sessions_token", "web_sessions", ["token_id"])
    _backfill_code_owner()


def downgrade() -> None:
    op.drop_index("ix_web_sessions_token", table_name="web_sessions")
    op.drop_index("ix_web_sessions_user", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_column("tokens", "expires_at")
    op.drop_column("schedules", "code_owner")
    op.drop_column("jobs", "code_owner")


def _backfill_code_owner() -> None:
    conn = op.get_bind()
    last: tuple[object, str] | None = None
    while True:
        query = sa.select(jobs.c.id, jobs.c.owner, jobs.c.rerun_of, jobs.c.created_at)
        if last is not None:
            query = query.where(
                sa.tuple_(jobs.c.created_at, jobs.c.id) > sa.tuple_(sa.literal(last[0]), last[1])
            )
        rows = conn.execute(query.order_by(jobs.c.created_at, jobs.c.id).limit(BATCH)).all()
        if not rows:
            return
        for job_id, owner, rerun_of, _ in rows:
            # A parent is older, so it was filled in an earlier row or batch.
            code_owner = owner
            if rerun_of:
                parent = conn.scalar(sa.select(jobs.c.code_owner).where(jobs.c.id == rerun_of))
                code_owner = parent or owner
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(code_owner=code_owner))
        last = (rows[-1].created_at, rows[-1].id)
