"""job list name index: ix_jobs_name_created (name, created_at, id) for the search.

It replaces ``ix_jobs_name`` (name, created_at). A name search picks its page's
ids by sorting its matches' keys (created_at, id), then reads only those rows;
with the id in the index, picking the ids never touches the table. An index
change only; no data moves.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_name_created", "jobs", ["name", "created_at", "id"])
    op.drop_index("ix_jobs_name", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_name", "jobs", ["name", "created_at"])
    op.drop_index("ix_jobs_name_created", table_name="jobs")
