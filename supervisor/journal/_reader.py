"""Read-only access to a journal, for operators' tools (``python -m supervisor journal``).

A ``JournalReader`` never writes and never migrates: SQLite files are opened ``mode=ro``
(the server keeps them in WAL mode, where readers never block its writes), PostgreSQL
sessions are read-only. It is synchronous: the CLI is not a Trio program.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext

from ._engine import create_read_only_engine
from ._errors import JournalError
from ._migrate import head_revision
from ._records import CreateState, DeleteState, EventRecord, JobQuery, JobRecord
from ._rules import UNFINISHED
from ._schema import events, jobs, replicas
from ._store import Store

__all__ = [
    "JournalReader",
    "JournalSummary",
    "OwnerCount",
    "PhaseCount",
    "ReplicaReport",
    "ReplicaStatus",
]

_T = TypeVar("_T")

#: A job id prefix must be at least this long to name a job.
MIN_PREFIX = 4


@dataclass(frozen=True, slots=True)
class PhaseCount:
    """Jobs of one connector in one phase; ``live`` of them still owed work."""

    connector: str
    phase: int
    jobs: int
    live: int


@dataclass(frozen=True, slots=True)
class OwnerCount:
    """Jobs whose row names ``owner`` (None: released, nobody's); ``live`` of them unfinished."""

    owner: str | None
    jobs: int
    live: int


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """What ``journal stats`` shows."""

    revision: str | None
    jobs: int
    live: int
    counts: tuple[PhaseCount, ...]  # by connector, then phase
    oldest_live: JobRecord | None
    pending_creates: int  # create intent journalled, outcome not yet
    pending_deletes: int  # cancel intent journalled, not yet carried out
    last_write: float | None  # wall time of the newest event
    owners: tuple[OwnerCount, ...] = ()  # by owner, None (released) last


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One row of ``replicas``, judged at the journal's clock."""

    id: str
    host: str
    pid: int
    started: float  # journal clock, seconds since the epoch
    heartbeat: float  # journal clock: the last committed heartbeat
    heartbeat_age: float  # seconds, at ``ReplicaReport.now``
    live: bool  # heartbeat_age below the dead-after interval
    jobs: int  # unfinished jobs it owns


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """What ``replicas`` shows: every replica row, and the unfinished jobs nobody listed owns."""

    now: float  # the journal's clock (PostgreSQL's ``clock_timestamp()``; SQLite: this host's)
    clock: str  # "database" or "local"
    dead_after: float
    replicas: tuple[ReplicaStatus, ...]  # oldest first
    released: int  # unfinished jobs with no owner (released at a SIGTERM, or never owned)
    orphaned: int  # unfinished jobs whose owner has no row (pruned, or from another journal)

    @property
    def unowned(self) -> int:
        """Unfinished jobs no listed replica owns: the next heartbeat of a live one adopts them."""
        return self.released + self.orphaned


class JournalReader:
    """Queries over a journal's tables; open with ``JournalReader.open(url)``."""

    def __init__(self, engine: sa.Engine, revision: str | None) -> None:
        self.engine = engine
        self.revision = revision
        self._store = Store(engine)

    @classmethod
    @contextmanager
    def open(cls, url: str) -> Iterator[JournalReader]:
        """Open the journal at ``url`` read-only; its schema must be this version's.

        Errors: ``JournalError`` (missing file, unreachable database, other schema),
        ``ValueError`` for an unsupported URL.
        """
        engine = create_read_only_engine(url)
        try:
            revision = _revision(engine)
            head = head_revision()
            if revision is None:
                raise JournalError("not a journal (no schema): run `journal upgrade` first")
            if revision != head:
                raise JournalError(
                    f"journal schema is at {revision}, this version reads {head}: "
                    "upgrade the journal or use the matching version of this tool"
                )
            yield cls(engine, revision)
        finally:
            engine.dispose()

    def get(self, job_id: str) -> JobRecord | None:
        return self._read(self._store.get, job_id)

    def resolve(self, ref: str) -> JobRecord | None:
        """The job whose id is ``ref``, or starts with it (at least ``MIN_PREFIX`` characters).

        Errors: ``JournalError`` when a prefix names more than one job.
        """
        found = self.get(ref)
        if found is not None or len(ref) < MIN_PREFIX:
            return found
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = (
            sa.select(jobs.c.job_id)
            .where(jobs.c.job_id.like(f"{escaped}%", escape="\\"))
            .order_by(jobs.c.job_id)
            .limit(3)
        )
        with self.engine.connect() as connection:
            ids = list(connection.execute(query).scalars())
        if len(ids) > 1:
            raise JournalError(f"{ref!r} names more than one job: {', '.join(ids)}, ...")
        return self.get(ids[0]) if ids else None

    def find_by_meta(self, task_type: str, version: int, resource_meta: bytes) -> JobRecord | None:
        return self._read(self._store.find_by_meta, task_type, version, resource_meta)

    def events(self, job_id: str) -> list[EventRecord]:
        return self._read(self._store.events, job_id)

    def list_jobs(self, query: JobQuery | None = None) -> list[JobRecord]:
        """Jobs matching every filter of ``query`` (default: the newest 100), newest first."""
        return self._read(self._store.list_jobs, query or JobQuery())

    def summary(self) -> JournalSummary:
        """Counts by connector and phase, the oldest live job, pending creates and deletes."""
        return self._read(self._summary)

    def _summary(self) -> JournalSummary:
        by = (jobs.c.connector, jobs.c.phase)
        count = sa.func.count().label("n")
        with self.engine.begin() as connection:  # one snapshot
            totals = connection.execute(sa.select(*by, count).group_by(*by)).all()
            live = connection.execute(
                sa.select(*by, count).where(sa.text(UNFINISHED)).group_by(*by)
            ).all()
            pending_creates = connection.execute(
                sa.select(sa.func.count()).where(jobs.c.create_state == CreateState.PENDING.value)
            ).scalar_one()
            pending_deletes = connection.execute(
                sa.select(sa.func.count()).where(jobs.c.delete_state == DeleteState.REQUESTED.value)
            ).scalar_one()
            last_write = connection.execute(
                sa.select(events.c.at).order_by(events.c.seq.desc()).limit(1)
            ).scalar_one_or_none()
            live_jobs = sa.func.sum(_IS_UNFINISHED).label("live")
            owners = connection.execute(
                sa.select(jobs.c.owner, count, live_jobs).group_by(jobs.c.owner)
            ).all()
        live_of = {(row.connector, row.phase): row.n for row in live}
        counts = tuple(
            PhaseCount(row.connector, row.phase, row.n, live_of.get((row.connector, row.phase), 0))
            for row in sorted(totals, key=lambda row: (row.connector, row.phase))
        )
        oldest = self._store.oldest_unfinished()
        return JournalSummary(
            revision=self.revision,
            jobs=sum(c.jobs for c in counts),
            live=sum(c.live for c in counts),
            counts=counts,
            oldest_live=oldest,
            pending_creates=pending_creates,
            pending_deletes=pending_deletes,
            last_write=last_write,
            owners=tuple(
                OwnerCount(row.owner, row.n, int(row.live or 0))
                for row in sorted(owners, key=lambda row: (row.owner is None, row.owner or ""))
            ),
        )

    def replica_report(self, dead_after: float) -> ReplicaReport:
        """Every replica with its heartbeat age and unfinished jobs, by the journal's clock: a
        replica whose last heartbeat is ``dead_after`` seconds old or older is dead."""
        return self._read(self._replica_report, dead_after)

    def _replica_report(self, dead_after: float) -> ReplicaReport:
        owned = sa.func.count().label("n")
        with self.engine.begin() as connection:
            rows = connection.execute(
                sa.select(replicas).order_by(replicas.c.started, replicas.c.id)
            ).all()
            counts = connection.execute(
                sa.select(jobs.c.owner, owned).where(sa.text(UNFINISHED)).group_by(jobs.c.owner)
            ).all()
            # After the rows: a heartbeat committed meanwhile is then never "in the future".
            now, clock = _clock(connection)
        jobs_of: dict[str | None, int] = {row.owner: row.n for row in counts}
        listed = tuple(
            ReplicaStatus(
                id=row.id,
                host=row.host,
                pid=row.pid,
                started=row.started,
                heartbeat=row.heartbeat,
                heartbeat_age=now - row.heartbeat,
                live=now - row.heartbeat < dead_after,
                jobs=jobs_of.pop(row.id, 0),
            )
            for row in rows
        )
        released = jobs_of.pop(None, 0)
        return ReplicaReport(
            now=now,
            clock=clock,
            dead_after=dead_after,
            replicas=listed,
            released=released,
            orphaned=sum(jobs_of.values()),
        )

    def _read(self, query: Callable[..., _T], *args: object) -> _T:
        try:
            return query(*args)
        except sa.exc.SQLAlchemyError as exc:
            raise JournalError(f"journal read failed: {exc}") from exc


_IS_UNFINISHED = sa.case((sa.text(f"({UNFINISHED})"), 1), else_=0)
"""1 for an unfinished job, else 0: summed, the live jobs of a group."""


def _clock(connection: sa.Connection) -> tuple[float, str]:
    """The journal's clock: PostgreSQL's (which stamps heartbeats), or this host's for SQLite
    (one host owns a SQLite journal, and stamps its heartbeats with this same clock)."""
    if connection.dialect.name == "postgresql":
        now = connection.execute(sa.text("SELECT extract(epoch from clock_timestamp())"))
        return float(now.scalar_one()), "database"
    return time.time(), "local"


def _revision(engine: sa.Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        raise JournalError(f"cannot read the journal: {exc}") from exc
