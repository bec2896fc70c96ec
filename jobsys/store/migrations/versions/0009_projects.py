"""projects: everything belongs to a project; users have a role per project.

Every job, template, schedule, secret, token and audit entry belongs to one.

- ``projects`` and ``project_members`` are new. One project, ``default``, is
  made, and everything that exists moves into it.
- ``users.role`` becomes the *global* role (held in every project). Admins keep
  theirs: they become global admins, who manage projects and users. Every other
  user's role moves to a membership of ``default`` and their global role
  becomes "" (none), so they see exactly what they saw before: everything that
  exists is in ``default``, and projects made later are not theirs until granted.
- ``users.oidc_subject``: who a user is at the OpenID Connect provider
  (issuer and subject), for users who sign in there; none for existing users.
- ``tokens.project``: a token acts in one project, or globally (None). Admin
  tokens stay global; the others act in ``default`` with the role they had.
- ``jobs.project``, ``schedules.project`` (names unique per project now),
  ``catalog.project`` and ``secrets.project`` (both keyed by project and name).
- ``audit.project``: entries about jobs, schedules, templates and secrets were
  about ``default``; the rest (sign-ins, users, tokens) stay global (None).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT = "default"
#: Audit actions that were about an object that now belongs to ``default``.
PROJECT_ACTIONS = ("job.", "schedule.", "catalog.", "secret.")

projects = sa.table(
    "projects",
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("created_at", sa.DateTime),
    sa.column("created_by", sa.String),
)
members = sa.table(
    "project_members",
    sa.column("project", sa.String),
    sa.column("user_id", sa.Integer),
    sa.column("role", sa.String),
)
users = sa.table("users", sa.column("id", sa.Integer), sa.column("role", sa.String))
tokens = sa.table("tokens", sa.column("role", sa.String), sa.column("project", sa.String))
audit = sa.table("audit", sa.column("action", sa.String), sa.column("project", sa.String))


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(
        projects.insert().values(
            name=DEFAULT, description="", created_at=now, created_by="migration 0009"
        )
    )
    op.create_table(
        "project_members",
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["project"], ["projects.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project", "user_id"),
    )
    op.create_index("ix_project_members_user", "project_members", ["user_id"])
    op.execute(
        members.insert().from_select(
            ["project", "user_id", "role"],
            sa.select(sa.literal(DEFAULT), users.c.id, users.c.role).where(
                users.c.role.notin_(["admin", ""])
            ),
        )
    )
    op.execute(users.update().where(users.c.role != "admin").values(role=""))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("oidc_subject", sa.String(512), nullable=True))
        batch.create_unique_constraint("uq_users_oidc_subject", ["oidc_subject"])

    for table in ("jobs", "schedules"):
        _add_project(table, nullable=False)
    op.create_index("ix_jobs_project_created", "jobs", ["project", "created_at", "id"])
    _names_unique_per_project()

    _add_project("tokens", nullable=True)
    op.execute(tokens.update().where(tokens.c.role != "admin").values(project=DEFAULT))

    op.add_column("audit", sa.Column("project", sa.String(64), nullable=True))
    op.execute(
        audit.update()
        .where(sa.or_(*(audit.c.action.startswith(p) for p in PROJECT_ACTIONS)))
        .values(project=DEFAULT)
    )
    op.create_index("ix_audit_project_ts", "audit", ["project", "ts"])

    _rekey(
        "catalog",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
    )
    _rekey(
        "secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )


def _add_project(table: str, *, nullable: bool) -> None:
    """A ``project`` column referencing ``projects``; a required one is filled with
    ``default`` before it is made NOT NULL (on SQLite, by rebuilding the table)."""
    op.add_column(table, sa.Column("project", sa.String(64), nullable=True))
    if not nullable:
        op.execute(
            sa.table(table, sa.column("project", sa.String)).update().values(project=DEFAULT)
        )
    with op.batch_alter_table(table) as batch:
        if not nullable:
            batch.alter_column("project", existing_type=sa.String(64), nullable=False)
        batch.create_foreign_key(f"fk_{table}_project", "projects", ["project"], ["name"])


def _names_unique_per_project() -> None:
    """Schedule names were unique everywhere; now within a project. 0001 left the
    old constraint unnamed: PostgreSQL named it, SQLite did not."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("schedules_name_key", "schedules", type_="unique")
        op.create_unique_constraint("uq_schedules_project_name", "schedules", ["project", "name"])
        return
    naming = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
    with op.batch_alter_table("schedules", naming_convention=naming) as batch:
        batch.drop_constraint("uq_schedules_name", type_="unique")
        batch.create_unique_constraint("uq_schedules_project_name", ["project", "name"])


def _rekey(table: str, *columns: sa.Column[object]) -> None:
    """Key ``table`` by (project, name) instead of name: a new table with the new
    key, every row copied into ``default``, and the old one dropped. (A primary
    key cannot be altered in place on SQLite, and no table refers to these.)"""
    new = f"{table}_0009"
    op.create_table(
        new,
        sa.Column("project", sa.String(64), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["project"], ["projects.name"], name=f"fk_{table}_project"),
        sa.PrimaryKeyConstraint("project", "name"),
    )
    names = [c.name for c in columns]
    old = sa.table(table, *(sa.column(n) for n in names))
    op.execute(
        sa.table(new, sa.column("project"), *(sa.column(n) for n in names))
        .insert()
        .from_select(["project", *names], sa.select(sa.literal(DEFAULT), *old.c))
    )
    op.drop_table(table)
    op.rename_table(new, table)


def downgrade() -> None:
    raise NotImplementedError(
        "0009 cannot be undone: two projects may hold schedules, templates or secrets of "
        "the same name; restore the backup taken before the upgrade instead"
    )
