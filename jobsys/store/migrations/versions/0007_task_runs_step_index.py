"""task runs step index: ix_task_runs_step (step_id, item_start).

The worker's end of every step (which of its chunks ended, and how) and every
results page look up a step's task runs by ``step_id`` alone, in item order.
``ix_task_runs_job`` leads with ``job_id``, so those queries scanned the whole
table: after a few million-item maps (each row holding a chunk's results) a
one-call job's end and its results page took over a millisecond more each.
An index change only; no data moves.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_task_runs_step", "task_runs", ["step_id", "item_start"])


def downgrade() -> None:
    op.drop_index("ix_task_runs_step", table_name="task_runs")
