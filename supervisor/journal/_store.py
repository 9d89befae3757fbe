"""The journal's SQL: synchronous SQLAlchemy Core operations, run in worker threads.

A ``Store`` is thread-safe the way an engine is: every call checks out its own connection.
Only the journal's writer actor calls ``commit``, which is shaped for throughput: driver SQL
executed with tuples (no per-row SQLAlchemy processing), and, for a job whose row the
writer committed and still remembers, an UPDATE of only the columns that changed. That
UPDATE requires the row's ``updated_at`` to be the one remembered; a row someone else
changed (or removed) is written whole instead, so the result is always the put's record.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._memory import is_unfinished
from ._records import CreateState, DeleteState, EventRecord, JobRecord, Put
from ._schema import TERMINAL_PHASES, UNFINISHED, events, jobs

__all__ = ["IfAbsent", "Store", "meta_key"]

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
        self._sql = _Sql(engine.dialect.name)
        # The writer's view of the rows it committed last (unfinished jobs only): a put that
        # changes none of the stable columns of such a row is an UPDATE of the others.
        self._committed: dict[str, JobRecord] = {}
        self._fail_next: Exception | None = None

    def fail_next(self, error: Exception | None = None) -> None:
        """Test hook: the next ``commit`` writes its puts, then rolls back and raises ``error``.

        The default error is an ``OperationalError``, like a lost connection.
        """
        self._fail_next = error or sa.exc.OperationalError("COMMIT", None, Exception("injected"))

    def commit(self, writes: Sequence[Put | IfAbsent]) -> dict[int, JobRecord]:
        """Apply ``writes`` in order in one transaction: write each job row, append each event.

        An ``IfAbsent`` put is skipped (no row, no event) when its job already has a row at
        that point; the result maps the index of each skipped one to that row.

        Errors: whatever SQLAlchemy raises; nothing is committed then.
        """
        batch = _Batch(writes)
        try:
            with self.engine.begin() as connection:
                skipped = self._insert_absent(connection, batch)
                self._write_rows(connection, batch, skipped)
                for statement, params in self._sql.insert_events(batch.events(skipped)):
                    connection.exec_driver_sql(statement, params)
                error, self._fail_next = self._fail_next, None
                if error is not None:
                    raise error
        except BaseException:
            for job_id in batch.job_ids():  # the outcome may be unknown: forget these rows
                self._committed.pop(job_id, None)
            raise
        self._remember(batch, skipped)
        return skipped

    def _insert_absent(self, connection: sa.Connection, batch: _Batch) -> dict[int, JobRecord]:
        """Insert the rows of the batch's intents where none exists; the puts skipped."""
        if not batch.intents and not batch.decided:
            return {}
        records = [batch.put(index).record for index in batch.intents.values()]
        inserted: set[str] = set()
        for at in range(0, len(records), _ABSENT_CHUNK):
            chunk = records[at : at + _ABSENT_CHUNK]
            params = tuple(value for record in chunk for value in _full_row(record))
            result = connection.exec_driver_sql(self._sql.insert_absent(len(chunk)), params)
            inserted.update(job_id for (job_id,) in result)
        missed = [record.job_id for record in records if record.job_id not in inserted]
        found: dict[str, JobRecord] = {}
        for at in range(0, len(missed), _ABSENT_CHUNK):
            ids = missed[at : at + _ABSENT_CHUNK]
            rows = connection.exec_driver_sql(self._sql.select(len(ids)), tuple(ids))
            for row in rows:
                record = _record(dict(zip(_RECORD_FIELDS, row, strict=True)))
                found[record.job_id] = record
        return batch.skipped(found)

    def _write_rows(
        self, connection: sa.Connection, batch: _Batch, skipped: dict[int, JobRecord]
    ) -> None:
        """Write the last put of each job: an UPDATE of the changing columns when the writer
        knows the row and its stable columns stay; else the whole row (upsert)."""
        # The hot path of every transition: tuples straight to the driver, a few multi-row
        # UPDATEs (see _Sql.update) that leave the request blob, meta_key and their indexes
        # alone, and a whole row only for new jobs and the rare put that changes the identity.
        known: Mapping[str, JobRecord] = self._committed
        if batch.intents:  # their rows, then the rows the writer knew
            known = collections.ChainMap(batch.intent_rows(skipped), self._committed)
        updates: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}  # by the columns changed
        updated: list[JobRecord] = []
        upserts: list[tuple[Any, ...]] = []
        for job_id, record in batch.rows.items():
            before = known.get(job_id)
            if before is None or _stable(before) != _stable(record):
                upserts.append(_full_row(record))
                continue
            # SET only what changed: each column set costs SQLite its CHECKs and the indexes
            # that hold it (or whose predicate reads it), changed or not.
            old, new = _mutable(before), _mutable(record)
            changed = tuple(i for i in _UPDATED_INDEXES if old[i] != new[i]) or _UPDATED_AT
            row = (*(new[i] for i in changed), job_id, before.updated_at)
            updates.setdefault(changed, []).append(row)
            updated.append(record)
        rowcount = 0
        for changed, rows in updates.items():
            for statement, params in self._sql.update(changed, rows):
                rowcount += connection.exec_driver_sql(statement, params).rowcount
        if rowcount != len(updated):  # a row is not what we knew: write them all whole
            upserts.extend(map(_full_row, updated))
        if upserts:
            connection.exec_driver_sql(self._sql.upsert, upserts)

    def _remember(self, batch: _Batch, skipped: dict[int, JobRecord]) -> None:
        """After a commit: remember the rows of unfinished jobs, forget finished ones."""
        known = self._committed
        if len(known) > _REMEMBER_LIMIT:
            known.clear()
        for job_id, record in batch.intent_rows(skipped).items():
            if job_id not in batch.rows:
                known[job_id] = record
        known.update(batch.rows)
        for job_id, record in batch.rows.items():
            # Most rows have a live phase, and then the job is unfinished: skip the full rule.
            maybe_finished = record.phase in TERMINAL_PHASES or record.create_state in _NO_PHASE
            if maybe_finished and not is_unfinished(record):
                del known[job_id]

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


@dataclass(frozen=True, slots=True)
class IfAbsent:
    """A put that ``Store.commit`` applies only when its job has no row yet."""

    put: Put


_COLUMNS = tuple(column.name for column in jobs.c)  # the full row: _RECORD_FIELDS + meta_key
_STABLE = (
    *("task_type", "task_type_version", "connector", "created_at"),
    *("resource_meta", "create_request", "outputs"),
)
"""Columns an UPDATE leaves alone: the identity, resource_meta (meta_key follows it) and the
two blobs, which a job's transitions rarely change (outputs: once, at the end)."""
_UPDATED = tuple(name for name in _RECORD_FIELDS if name not in (*_STABLE, "job_id"))
_UPDATED_INDEXES = range(len(_UPDATED))
_UPDATED_AT = (_UPDATED.index("updated_at"),)
_EVENT_COLUMNS = ("job_id", "at", "kind", "phase", "detail")
_ABSENT_CHUNK = 500  # rows per multi-row INSERT: 21 parameters each, far below SQLite's 32,766
_ROWS_PER_STATEMENT = 500  # of the writer's UPDATEs (at most 14 parameters a row) and events
_NO_PHASE = frozenset({CreateState.FAILED, CreateState.ABANDONED})  # see is_unfinished
_REMEMBER_LIMIT = 1_000_000  # rows the writer remembers; past it, it starts again from none


class _Sql:
    """The writer's statements as driver SQL (executed with tuples, no per-row processing)."""

    def __init__(self, dialect: str) -> None:
        self.mark = "%s" if dialect == "postgresql" else "?"
        self.values = f"({', '.join([self.mark] * len(_COLUMNS))})"
        columns = ", ".join(_COLUMNS)
        replace = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS if name != "job_id")
        self.insert = f"INSERT INTO jobs ({columns}) VALUES "
        self.upsert = f"{self.insert}{self.values} ON CONFLICT (job_id) DO UPDATE SET {replace}"
        # One statement per batch (or per _ROWS_PER_STATEMENT rows), not one per row: SQLite
        # gets multi-row VALUES, PostgreSQL arrays (a column each; even pipelined, it runs
        # every statement of an executemany on its own).
        self.columnar = dialect == "postgresql"
        self._updates: dict[tuple[int, ...], str] = {}

    def update(
        self, changed: tuple[int, ...], rows: list[tuple[Any, ...]]
    ) -> Iterator[tuple[str, Any]]:
        """Statements and parameters that UPDATE the ``_UPDATED`` columns at ``changed`` of
        ``rows``: their values, then the job id and the ``updated_at`` the row must still
        have (else it is left alone: see the row count)."""
        columns = (*(_UPDATED[i] for i in changed), "job_id", "seen")
        if self.columnar:
            assignments = ", ".join(f"{name} = v.{name}" for name in columns[:-2])
            where = "jobs.job_id = v.job_id AND jobs.updated_at = v.seen"
            source = _unnest(columns)
            yield f"UPDATE jobs SET {assignments} FROM {source} WHERE {where}", _arrays(rows)
            return
        # SQLite names the columns of VALUES column1, column2, ...; the statement must start
        # with UPDATE (not WITH) for sqlite3 to report its row count.
        names = [f"v.column{n}" for n in range(1, len(columns) + 1)]
        assignments = ", ".join(f"{c} = {v}" for c, v in zip(columns[:-2], names, strict=False))
        where = f"jobs.job_id = {names[-2]} AND jobs.updated_at = {names[-1]}"
        for chunk in _chunks(rows):
            values = self._values(len(columns), len(chunk))
            yield (
                f"UPDATE jobs SET {assignments} FROM (VALUES {values}) AS v WHERE {where}",
                tuple(itertools.chain.from_iterable(chunk)),
            )

    def insert_events(self, rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, Any]]:
        """Statements and parameters that append ``rows`` to events, in order."""
        columns = ", ".join(_EVENT_COLUMNS)
        if not rows:
            return
        if self.columnar:
            source = _unnest(_EVENT_COLUMNS)
            yield (
                f"INSERT INTO events ({columns}) SELECT {columns} FROM {source} ORDER BY n",
                (_arrays(rows)),
            )
            return
        for chunk in _chunks(rows):
            values = self._values(len(_EVENT_COLUMNS), len(chunk))
            yield (
                f"INSERT INTO events ({columns}) VALUES {values}",
                tuple(itertools.chain.from_iterable(chunk)),
            )

    def _values(self, columns: int, rows: int) -> str:
        row = f"({', '.join([self.mark] * columns)})"
        return ", ".join([row] * rows)

    def insert_absent(self, rows: int) -> str:
        """Insert ``rows`` rows, skipping the jobs that have one; returns the inserted job ids."""
        values = ", ".join([self.values] * rows)
        return f"{self.insert}{values} ON CONFLICT (job_id) DO NOTHING RETURNING job_id"

    def select(self, rows: int) -> str:
        marks = ", ".join([self.mark] * rows)
        return f"SELECT {', '.join(_RECORD_FIELDS)} FROM jobs WHERE job_id IN ({marks})"


_PG_TYPES = {
    "attempt": "int",
    "phase": "int",
    "updated_at": "float8",
    "deadline": "float8",
    "finished_at": "float8",
    "lease_until": "float8",
    "at": "float8",
    "seen": "float8",
}


def _unnest(columns: Sequence[str]) -> str:
    arrays = ", ".join(f"%s::{_PG_TYPES.get(name, 'text')}[]" for name in columns)
    return f"unnest({arrays}) WITH ORDINALITY AS v({', '.join(columns)}, n)"


def _arrays(rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    return tuple(map(list, zip(*rows, strict=True)))


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for at in range(0, len(rows), _ROWS_PER_STATEMENT):
        yield rows[at : at + _ROWS_PER_STATEMENT]


class _Batch:
    """One commit's writes, resolved in order: what each job's row becomes, which conditional
    puts the batch itself decides, and which ones the database must decide (``intents``)."""

    def __init__(self, writes: Sequence[Put | IfAbsent]) -> None:
        self.writes = writes
        self.rows: dict[str, JobRecord] = {}  # the last unconditional put of each job
        self.intents: dict[str, int] = {}  # job -> index of a conditional put first to write it
        self.decided: dict[int, JobRecord | int] = {}  # index -> the row it finds, or the
        # index of the intent whose outcome is that row
        for index, write in enumerate(writes):
            if type(write) is Put:
                self.rows[write.record.job_id] = write.record
                continue
            assert isinstance(write, IfAbsent)
            job_id = write.put.record.job_id
            if job_id in self.rows:
                self.decided[index] = self.rows[job_id]
            elif job_id in self.intents:
                self.decided[index] = self.intents[job_id]
            else:
                self.intents[job_id] = index

    def job_ids(self) -> Iterable[str]:
        return itertools.chain(self.rows, self.intents)

    def put(self, index: int) -> Put:
        write = self.writes[index]
        return write.put if isinstance(write, IfAbsent) else write

    def skipped(self, found: dict[str, JobRecord]) -> dict[int, JobRecord]:
        """The conditional puts not applied, with the row each found; ``found``: the rows
        the database had for the intents it did not insert."""
        skipped = {self.intents[job_id]: record for job_id, record in found.items()}
        for index, decider in self.decided.items():
            if isinstance(decider, JobRecord):
                skipped[index] = decider
            else:
                skipped[index] = skipped.get(decider) or self.put(decider).record
        return skipped

    def intent_rows(self, skipped: dict[int, JobRecord]) -> dict[str, JobRecord]:
        """The row each intent's job has after the intents: inserted, or found."""
        return {
            job_id: skipped[index] if index in skipped else self.put(index).record
            for job_id, index in self.intents.items()
        }

    def events(self, skipped: dict[int, JobRecord]) -> list[tuple[Any, ...]]:
        if not skipped:
            return [_event_row(self.put(index)) for index in range(len(self.writes))]
        return [
            _event_row(self.put(index)) for index in range(len(self.writes)) if index not in skipped
        ]


def _stable(record: JobRecord) -> tuple[Any, ...]:
    return (
        record.task_type,
        record.task_type_version,
        record.connector,
        record.created_at,
        record.resource_meta,
        record.create_request,
        record.outputs,
    )


def _full_row(record: JobRecord) -> tuple[Any, ...]:
    """The whole row, in ``_COLUMNS`` order; meta_key is computed only here."""
    meta = record.resource_meta
    return (
        record.job_id,
        record.task_type,
        record.task_type_version,
        record.connector,
        record.attempt,
        record.create_state.value,
        record.delete_state.value,
        record.phase,
        record.created_at,
        record.updated_at,
        meta,
        record.message,
        record.log_links,
        record.outputs,
        record.custom_info,
        record.create_request,
        record.deadline,
        record.finished_at,
        record.owner,
        record.lease_until,
        None if meta is None else meta_key(record.task_type, record.task_type_version, meta),
    )


def _mutable(record: JobRecord) -> tuple[Any, ...]:
    """The ``_UPDATED`` columns of ``record``, as parameters."""
    return (
        record.attempt,
        record.create_state.value,
        record.delete_state.value,
        record.phase,
        record.updated_at,
        record.message,
        record.log_links,
        record.custom_info,
        record.deadline,
        record.finished_at,
        record.owner,
        record.lease_until,
    )


def _event_row(put: Put) -> tuple[Any, ...]:
    record = put.record
    return (record.job_id, record.updated_at, put.kind, record.phase, put.detail)


def _record(row: Any) -> JobRecord:
    values = dict(row)
    values["create_state"] = CreateState(values["create_state"])
    values["delete_state"] = DeleteState(values["delete_state"])
    return JobRecord(**values)


def _first(records: list[JobRecord]) -> JobRecord | None:
    return records[0] if records else None
