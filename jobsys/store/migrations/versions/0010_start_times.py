"""start times: a job may be held until a time, and says why it waits.

- ``jobs.waiting``: why a queued job may not start yet (``{"reason", "detail",
  "position"}``), NULL when nothing holds it: every existing job.
- ``jobs.not_before``: the start time a job was given, NULL for none.
- ``ix_jobs_start_due`` (status, not_before): beat's look for held jobs whose
  time has come.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("waiting", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("jobs", sa.Column("not_before", sa.DateTime(), nullable=True))
    op.create_index("ix_jobs_start_due", "jobs", ["status", "not_before"])


def downgrade() -> None:
    op.drop_index("ix_jobs_start_due", table_name="jobs")
    op.drop_column("jobs", "not_before")
    op.drop_column("jobs", "waiting")
