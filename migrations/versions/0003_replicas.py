"""Replicas: a replicas table with heartbeats, and each job's owner epoch.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE on SQLite too: a batch copy would rebuild the partial index.
    op.add_column("jobs", sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_jobs_owner", "jobs", ["owner"])
    op.create_table(
        "replicas",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", sa.Double, nullable=False),
        sa.Column("heartbeat", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    op.drop_index("ix_jobs_owner", "jobs")
    op.drop_column("jobs", "epoch")
