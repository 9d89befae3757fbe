"""Replicas: the node (kernel boot and PID namespace) each replica runs on.

A replica that finds a peer of its own node whose process is gone takes its jobs over at
once, without waiting for the dead-interval: a restart after kill -9 resumes at once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("replicas", sa.Column("node", sa.String))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("node")
