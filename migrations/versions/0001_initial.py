"""The jobs table and its append-only event history.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies: later changes to the application's constants must not rewrite history.
_UNFINISHED = (
    "create_state = 'pending' OR delete_state = 'requested'"
    " OR (create_state NOT IN ('failed', 'abandoned') AND phase NOT IN (3, 4, 5, 8))"
)
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String, primary_key=True),
        sa.Column("task_type", sa.String, nullable=False),
        sa.Column("task_type_version", sa.Integer, nullable=False),
        sa.Column("connector", sa.String, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("create_state", sa.String(16), nullable=False),
        sa.Column("delete_state", sa.String(16), nullable=False),
        sa.Column("phase", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("resource_meta", sa.LargeBinary),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("log_links", sa.Text, nullable=False),
        sa.Column("outputs", sa.LargeBinary),
        sa.Column("custom_info", sa.Text),
        sa.Column("create_request", sa.LargeBinary),
        sa.Column("deadline", sa.Double),
        sa.Column("finished_at", sa.Double),
        sa.Column("owner", sa.String),
        sa.Column("lease_until", sa.Double),
        sa.Column("meta_key", sa.String(64)),
        sa.CheckConstraint(
            "create_state IN ('pending', 'created', 'failed', 'abandoned')",
            name="ck_jobs_create_state",
        ),
        sa.CheckConstraint(
            "delete_state IN ('none', 'requested', 'done')", name="ck_jobs_delete_state"
        ),
        sa.CheckConstraint("attempt >= 0", name="ck_jobs_attempt"),
    )
    op.create_index("ix_jobs_meta_key", "jobs", ["meta_key"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_phase_created_at", "jobs", ["phase", "created_at"])
    op.create_index(
        "ix_jobs_unfinished",
        "jobs",
        ["created_at"],
        sqlite_where=sa.text(_UNFINISHED),
        postgresql_where=sa.text(_UNFINISHED),
    )
    op.create_table(
        "events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("phase", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_job_id_seq", "events", ["job_id", "seq"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("jobs")
