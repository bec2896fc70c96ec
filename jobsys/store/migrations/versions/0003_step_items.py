"""step items apart: a function step's item list moves from ``steps.spec`` to ``step_items``.

The step row is updated once per finished chunk (progress counts), and SQLite
rewrites a whole row on every update: with a million items inside it, a
thousand-chunk step rewrote gigabytes. The items now live in their own row,
written once. Steps are moved in id order, a batch at a time; the JSON is
rewritten in Python because JSON operators differ between SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Steps per batch: a batch may hold up to this many full item lists in memory.
BATCH = 20

# Frozen copies of the columns this revision touches; never the live models.
steps = sa.table(
    "steps",
    sa.column("id", sa.String),
    sa.column("kind", sa.String),
    sa.column("spec", sa.JSON),
)
step_items = sa.table(
    "step_items",
    sa.column("step_id", sa.String),
    sa.column("items", sa.JSON),
)


def upgrade() -> None:
    op.create_table(
        "step_items",
        sa.Column("step_id", sa.String(32), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("step_id"),
    )
    conn = op.get_bind()
    after = ""
    while True:
        batch = conn.execute(
            sa.select(steps.c.id, steps.c.spec)
            .where(steps.c.kind == "function", steps.c.id > after)
            .order_by(steps.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        for step_id, spec in batch:
            items, rest = split_items(spec)
            conn.execute(step_items.insert().values(step_id=step_id, items=items))
            conn.execute(steps.update().where(steps.c.id == step_id).values(spec=rest))
        after = batch[-1].id


def downgrade() -> None:
    conn = op.get_bind()
    for step_id, items in conn.execute(sa.select(step_items.c.step_id, step_items.c.items)):
        spec = conn.execute(sa.select(steps.c.spec).where(steps.c.id == step_id)).scalar_one()
        conn.execute(
            steps.update().where(steps.c.id == step_id).values(spec={**spec, "items": items})
        )
    op.drop_table("step_items")


def split_items(spec: Any) -> tuple[list[Any], dict[str, Any]]:
    """The item list a stored step spec holds (empty if none), and the spec without it."""
    if not isinstance(spec, dict):
        return [], {}
    items = spec.get("items")
    rest = {k: v for k, v in spec.items() if k != "items"}
    return (items if isinstance(items, list) else []), rest
