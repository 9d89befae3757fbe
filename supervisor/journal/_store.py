"""The journal's SQL: synchronous SQLAlchemy Core operations, run in worker threads.

A ``Store`` is thread-safe the way an engine is: every call checks out its own connection.
Only the journal's writer actor calls ``commit``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ._records import CreateState, DeleteState, EventRecord, JobRecord, Put
from ._schema import UNFINISHED, events, jobs

__all__ = ["Store", "meta_key"]

_RECORD_FIELDS = tuple(column.name for column in jobs.c if column.name != "meta_key")


def meta_key(task_type: str, version: int, resource_meta: bytes) -> str:
    """The sha256 hex digest that indexes a job by the resource_meta a caller holds."""
    prefix = task_type.encode()
    digest = hashlib.sha256(b"%d:%s:%d:" % (len(prefix), prefix, version))
    digest.update(resource_meta)
    return digest.hexdigest()


class Store:
    """The journal's tables on one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._upsert = _upsert_statement(engine.dialect.name)
        self._fail_next: Exception | None = None

    def fail_next(self, error: Exception | None = None) -> None:
        """Test hook: the next ``commit`` writes its puts, then rolls back and raises ``error``.

        The default error is an ``OperationalError``, like a lost connection.
        """
        self._fail_next = error or sa.exc.OperationalError("COMMIT", None, Exception("injected"))

    def commit(self, puts: Sequence[Put]) -> None:
        """Apply ``puts`` in order in one transaction: upsert each job row, append each event.

        Errors: whatever SQLAlchemy raises; nothing is committed then.
        """
        latest = {put.record.job_id: put.record for put in puts}  # the last put of a job wins
        with self.engine.begin() as connection:
            connection.execute(self._upsert, [_job_row(record) for record in latest.values()])
            connection.execute(events.insert(), [_event_row(put) for put in puts])
            error, self._fail_next = self._fail_next, None
            if error is not None:
                raise error

    def get(self, job_id: str) -> JobRecord | None:
        """The job's row, or ``None``."""
        return _first(self._jobs(jobs.c.job_id == job_id))

    def find_by_meta(self, task_type: str, version: int, resource_meta: bytes) -> JobRecord | None:
        """The most recently updated job with this task type, version and resource_meta."""
        found = self._jobs(
            jobs.c.meta_key == meta_key(task_type, version, resource_meta),
            jobs.c.task_type == task_type,
            jobs.c.task_type_version == version,
            jobs.c.resource_meta == resource_meta,
            order_by=(jobs.c.updated_at.desc(),),
            limit=1,
        )
        return _first(found)

    def unfinished(self) -> list[JobRecord]:
        """Jobs the supervisor still owes work (see ``Journal.unfinished``), oldest first."""
        return self._jobs(sa.text(UNFINISHED), order_by=(jobs.c.created_at, jobs.c.job_id))

    def oldest_unfinished(self) -> JobRecord | None:
        """The unfinished job created first, or ``None``."""
        return _first(
            self._jobs(sa.text(UNFINISHED), order_by=(jobs.c.created_at, jobs.c.job_id), limit=1)
        )

    def events(self, job_id: str) -> list[EventRecord]:
        """The job's history, in order."""
        query = sa.select(events).where(events.c.job_id == job_id).order_by(events.c.seq)
        with self.engine.connect() as connection:
            return [EventRecord(**row._asdict()) for row in connection.execute(query)]

    def list_jobs(
        self,
        *,
        phase: int | None = None,
        task_type: str | None = None,
        connector: str | None = None,
        older_than: float | None = None,
        unfinished: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs matching every filter given, newest (by ``created_at``) first.

        ``unfinished``: only jobs the supervisor still owes work (see ``Journal.unfinished``).
        """
        criteria: list[sa.ColumnElement[bool] | sa.TextClause] = []
        if phase is not None:
            criteria.append(jobs.c.phase == phase)
        if task_type is not None:
            criteria.append(jobs.c.task_type == task_type)
        if connector is not None:
            criteria.append(jobs.c.connector == connector)
        if older_than is not None:
            criteria.append(jobs.c.created_at < older_than)
        if unfinished:
            criteria.append(sa.text(UNFINISHED))
        newest_first = (jobs.c.created_at.desc(), jobs.c.job_id.desc())
        return self._jobs(*criteria, order_by=newest_first, limit=limit, offset=offset)

    def _jobs(
        self,
        *criteria: sa.ColumnElement[bool] | sa.TextClause,
        order_by: Iterable[sa.ColumnElement[Any]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        query = sa.select(*(jobs.c[name] for name in _RECORD_FIELDS)).where(*criteria)
        query = query.order_by(*order_by).limit(limit).offset(offset or None)
        with self.engine.connect() as connection:
            return [_record(row._mapping) for row in connection.execute(query)]


def _upsert_statement(dialect: str) -> sa.Executable:
    """``INSERT .. ON CONFLICT (job_id) DO UPDATE`` replacing every column."""
    if dialect == "postgresql":
        pg = postgresql.insert(jobs)
        return pg.on_conflict_do_update(index_elements=[jobs.c.job_id], set_=_replace(pg.excluded))
    lite = sqlite.insert(jobs)
    return lite.on_conflict_do_update(index_elements=[jobs.c.job_id], set_=_replace(lite.excluded))


def _replace(excluded: Any) -> dict[str, Any]:
    return {c.name: excluded[c.name] for c in jobs.c if not c.primary_key}


def _job_row(record: JobRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in _RECORD_FIELDS}
    row["create_state"] = record.create_state.value
    row["delete_state"] = record.delete_state.value
    if record.resource_meta is not None:
        row["meta_key"] = meta_key(record.task_type, record.task_type_version, record.resource_meta)
    else:
        row["meta_key"] = None
    return row


def _event_row(put: Put) -> dict[str, Any]:
    record = put.record
    return {
        "job_id": record.job_id,
        "at": record.updated_at,
        "kind": put.kind,
        "phase": record.phase,
        "detail": put.detail,
    }


def _record(row: Any) -> JobRecord:
    values = dict(row)
    values["create_state"] = CreateState(values["create_state"])
    values["delete_state"] = DeleteState(values["delete_state"])
    return JobRecord(**values)


def _first(records: list[JobRecord]) -> JobRecord | None:
    return records[0] if records else None
