"""The journal's tables (SQLAlchemy Core), as the latest migration leaves them.

``migrations/`` creates these; a test proves the two agree. Change both together.
"""

from __future__ import annotations

import sqlalchemy as sa

from ._records import CreateState, DeleteState
from ._rules import UNFINISHED, UNFINISHED_RULE

__all__ = ["events", "jobs", "metadata", "replicas", "settings"]

metadata = sa.MetaData()

_Seconds = sa.Double
_SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String, primary_key=True),
    sa.Column("task_type", sa.String, nullable=False),
    sa.Column("task_type_version", sa.Integer, nullable=False),
    sa.Column("connector", sa.String, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("create_state", sa.String(16), nullable=False),
    sa.Column("delete_state", sa.String(16), nullable=False),
    sa.Column("phase", sa.Integer, nullable=False),
    sa.Column("created_at", _Seconds, nullable=False),
    sa.Column("updated_at", _Seconds, nullable=False),
    sa.Column("resource_meta", sa.LargeBinary),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("log_links", sa.Text, nullable=False),
    sa.Column("outputs", sa.LargeBinary),
    sa.Column("custom_info", sa.Text),
    sa.Column("create_request", sa.LargeBinary),
    sa.Column("deadline", _Seconds),
    sa.Column("finished_at", _Seconds),
    sa.Column("owner", sa.String),
    sa.Column("lease_until", _Seconds),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    # sha256 hex of (task_type, task_type_version, resource_meta): finds a job by the
    # resource_meta a caller holds without indexing the blob itself.
    sa.Column("meta_key", sa.String(64)),
    # ``UNFINISHED_RULE``, computed by the database: the unfinished index's predicate, so
    # that no index reads ``phase`` (virtual on SQLite; stored on PostgreSQL, whose jobs
    # table has fillfactor 70 so that a transition's new row version fits in its page).
    sa.Column("live", sa.Boolean, sa.Computed(UNFINISHED_RULE)),
    sa.CheckConstraint(
        sa.column("create_state").in_([s.value for s in CreateState]),
        name="ck_jobs_create_state",
    ),
    sa.CheckConstraint(
        sa.column("delete_state").in_([s.value for s in DeleteState]),
        name="ck_jobs_delete_state",
    ),
    sa.CheckConstraint("attempt >= 0", name="ck_jobs_attempt"),
    sa.Index("ix_jobs_meta_key", "meta_key"),
    sa.Index("ix_jobs_owner", "owner"),
    sa.Index("ix_jobs_created_at", "created_at"),
    sa.Index(
        "ix_jobs_unfinished",
        "created_at",
        sqlite_where=sa.text(UNFINISHED),
        postgresql_where=sa.text(UNFINISHED),
    ),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _SeqType, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("at", _Seconds, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("phase", sa.Integer, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_events_job_id_seq", "job_id", "seq"),
    sqlite_autoincrement=True,
)

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", _Seconds, nullable=False),  # database clock, seconds since the epoch
    sa.Column("heartbeat", _Seconds, nullable=False),  # database clock
    # kernel boot id and PID namespace: where ``pid`` can be checked (None: unknown)
    sa.Column("node", sa.String),
)
"""One row per running (or dead, not yet pruned) supervisor process on this journal."""
settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
"""Values the service keeps beside the jobs (the generated resource_meta key)."""
