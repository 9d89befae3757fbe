"""Jobs: a phase transition rewrites no index entry.

``live`` is the unfinished rule (``supervisor.journal._rules.UNFINISHED``) as a column the
database computes; the partial index of unfinished jobs is rebuilt on it, and the index of
(phase, created_at) goes. No index reads ``phase`` any more, so on PostgreSQL a transition
is a heap-only (HOT) update, which the jobs table's fillfactor leaves room for; SQLite keeps
``live`` virtual (computed on read).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copies: later changes to the application's constants must not rewrite history.
_UNFINISHED = (
    "create_state = 'pending' OR delete_state = 'requested'"
    " OR (create_state NOT IN ('failed', 'abandoned') AND phase NOT IN (3, 4, 5, 8))"
)
_FILLFACTOR = 70


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_jobs_unfinished", "jobs")
    op.drop_index("ix_jobs_phase_created_at", "jobs")
    if postgres:  # before the column: adding a stored column rewrites the table with it
        op.execute(f"ALTER TABLE jobs SET (fillfactor = {_FILLFACTOR})")
    # Plain ALTER TABLE on SQLite too (a virtual column): no batch copy of the table.
    op.add_column(
        "jobs",
        sa.Column("live", sa.Boolean, sa.Computed(_UNFINISHED, persisted=postgres or None)),
    )
    op.create_index(
        "ix_jobs_unfinished",
        "jobs",
        ["created_at"],
        sqlite_where=sa.text("live"),
        postgresql_where=sa.text("live"),
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_jobs_unfinished", "jobs")
    op.drop_column("jobs", "live")
    if postgres:
        op.execute("ALTER TABLE jobs RESET (fillfactor)")
    op.create_index("ix_jobs_phase_created_at", "jobs", ["phase", "created_at"])
    op.create_index(
        "ix_jobs_unfinished",
        "jobs",
        ["created_at"],
        sqlite_where=sa.text(_UNFINISHED),
        postgresql_where=sa.text(_UNFINISHED),
    )
