"""The journal's SQL: synchronous SQLAlchemy Core operations, run in worker threads.

A ``Store`` is thread-safe the way an engine is: every call checks out its own connection.
Only the journal's writer actor calls ``commit``, which is shaped for throughput: driver SQL
executed with tuples (no per-row SQLAlchemy processing), and, for a job whose row the
writer committed and still remembers, an UPDATE of only the columns that changed. That
UPDATE requires the row's ``updated_at`` to be the one remembered; a row someone else
changed (or removed) is written whole instead, so the result is always the put's record.

Fencing: a put writes an existing row only while the row's owner and epoch are the ones the
put expects (its record's own, or ``Put.expect``); the UPDATE requires them in its WHERE
clause, and the whole-row path reads them first under a row lock. A refused put writes
neither row nor event, and ``commit`` reports it (``Outcome.fenced``).
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ._engine import sqlite_path, writing
from ._errors import JournalLost
from ._records import EventRecord, JobQuery, JobRecord, Put
from ._rows import (
    RECORD_FIELDS,
    UPDATED_AT,
    UPDATED_INDEXES,
    Sql,
    event_row,
    full_row,
    meta_key,
    mutable_columns,
    record_of,
    record_of_tuple,
    stable_columns,
)
from ._rules import NO_EXTERNAL_JOB, TERMINAL_PHASES, UNFINISHED, is_unfinished
from ._schema import events, jobs, settings

__all__ = ["IfAbsent", "Outcome", "Store", "meta_key"]

_ABSENT_CHUNK = 500  # rows per multi-row INSERT: 23 parameters each, far below SQLite's 32,766
_REMEMBER_LIMIT = 1_000_000  # rows the writer remembers; past it, it starts again from none


class Store:
    """The journal's tables on one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sql = Sql(engine.dialect.name)
        # The writer's view of the rows it committed last (unfinished jobs only): a put that
        # changes none of the stable columns of such a row is an UPDATE of the others.
        self._committed: dict[str, JobRecord] = {}
        self._fail_next: Exception | None = None
        # A SQLite journal is the file that was opened: (st_dev, st_ino) of its path.
        self._path = sqlite_path(engine.url)
        self._identity: tuple[int, int] | None = None
        if self._path is not None and self._path.exists():
            stat = os.stat(self._path)
            self._identity = (stat.st_dev, stat.st_ino)

    def check_identity(self) -> None:
        """Errors: JournalLost when the SQLite file opened is no longer at its path."""
        if self._path is None or self._identity is None:
            return
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            raise JournalLost(f"the journal file {self._path} was deleted") from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise JournalLost(f"the journal file {self._path} was replaced by another file")

    def probe(self) -> None:
        """Check that the journal is still the one opened (file, tables).

        Errors: JournalLost; SQLAlchemy's errors for anything else.
        """
        self.check_identity()
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.select(jobs.c.job_id).limit(1)).all()
        except sa.exc.SQLAlchemyError as exc:
            reason = self.lost_reason(exc)
            if reason is not None:
                raise JournalLost(reason) from exc
            raise

    def lost_reason(self, exc: BaseException) -> str | None:
        """Why ``exc`` means the journal is gone (missing tables, a deleted or replaced
        file); None for any other failure (an outage, a constraint)."""
        try:
            self.check_identity()
        except JournalLost as lost:
            return str(lost)
        orig = getattr(exc, "orig", None)
        if getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig):
            return f"the journal's tables are gone from the database ({orig})"
        return None

    def fail_next(self, error: Exception | None = None) -> None:
        """Test hook: the next ``commit`` writes its puts, then rolls back and raises ``error``.

        The default error is an ``OperationalError``, like a lost connection.
        """
        self._fail_next = error or sa.exc.OperationalError("COMMIT", None, Exception("injected"))

    def commit(self, writes: Sequence[Put | IfAbsent]) -> Outcome:
        """Apply ``writes`` in order in one transaction: write each job row, append each event.

        An ``IfAbsent`` put is skipped (no row, no event) when its job already has a row at
        that point; ``Outcome.skipped`` maps the index of each skipped one to that row. A put
        fenced out (see the module docstring) is not applied either: ``Outcome.fenced``.

        Errors: whatever SQLAlchemy raises; nothing is committed then.
        """
        batch = _Batch(writes)
        try:
            with writing(self.engine) as connection:
                skipped = self._insert_absent(connection, batch)
                fenced_jobs = self._write_rows(connection, batch, skipped)
                fenced = batch.indexes_of(fenced_jobs)
                events = batch.events(skipped.keys() | fenced if fenced else skipped.keys())
                for statement, params in self._sql.insert_events(events):
                    connection.exec_driver_sql(statement, params)
                error, self._fail_next = self._fail_next, None
                if error is not None:
                    raise error
            self.check_identity()  # committed into a file nobody will open again?
        except BaseException:
            for job_id in batch.job_ids():  # the outcome may be unknown: forget these rows
                self._committed.pop(job_id, None)
            raise
        self._remember(batch, skipped, fenced_jobs)
        return Outcome(skipped, frozenset(fenced))

    def _insert_absent(self, connection: sa.Connection, batch: _Batch) -> dict[int, JobRecord]:
        """Insert the rows of the batch's intents where none exists; the puts skipped."""
        if not batch.intents and not batch.decided:
            return {}
        records = [batch.put(index).record for index in batch.intents.values()]
        inserted: set[str] = set()
        for at in range(0, len(records), _ABSENT_CHUNK):
            chunk = records[at : at + _ABSENT_CHUNK]
            params = tuple(value for record in chunk for value in full_row(record))
            result = connection.exec_driver_sql(self._sql.insert_absent(len(chunk)), params)
            inserted.update(job_id for (job_id,) in result)
        missed = [record.job_id for record in records if record.job_id not in inserted]
        found: dict[str, JobRecord] = {}
        for at in range(0, len(missed), _ABSENT_CHUNK):
            ids = missed[at : at + _ABSENT_CHUNK]
            rows = connection.exec_driver_sql(self._sql.select(len(ids)), tuple(ids))
            for row in rows:
                record = record_of(dict(zip(RECORD_FIELDS, row, strict=True)))
                found[record.job_id] = record
        return batch.skipped(found)

    def _write_rows(
        self, connection: sa.Connection, batch: _Batch, skipped: dict[int, JobRecord]
    ) -> set[str]:
        """Write the last put of each job: an UPDATE of the changing columns when the writer
        knows the row and its stable columns stay; else the whole row (upsert). Returns the
        jobs fenced out."""
        # The hot path of every transition: tuples straight to the driver, a few multi-row
        # UPDATEs (see Sql.update) that leave the request blob, meta_key and their indexes
        # alone, and a whole row only for new jobs and the rare put that changes the identity.
        known: Mapping[str, JobRecord] = self._committed
        if batch.intents:  # their rows, then the rows the writer knew
            known = collections.ChainMap(batch.intent_rows(skipped), self._committed)
        updates: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}  # by the columns changed
        updated: list[JobRecord] = []
        upserts: list[JobRecord] = []
        for job_id, record in batch.rows.items():
            before = known.get(job_id)
            if (
                before is None
                or batch.expects[job_id] != _fence(record)
                or stable_columns(before) != stable_columns(record, before)
            ):
                upserts.append(record)
                continue
            # SET only what changed: each column set costs SQLite its CHECKs and the indexes
            # that hold it (or whose predicate reads it), changed or not.
            old, new = mutable_columns(before), mutable_columns(record)
            changed = tuple(i for i in UPDATED_INDEXES if old[i] != new[i]) or UPDATED_AT
            row = (*(new[i] for i in changed), job_id, before.updated_at, *_fence(record))
            updates.setdefault(changed, []).append(row)
            updated.append(record)
        rowcount = 0
        for changed, rows in updates.items():
            for statement, params in self._sql.update(changed, rows):
                rowcount += connection.exec_driver_sql(statement, params).rowcount
        if rowcount != len(updated):  # a row is not what we knew: write them all whole
            upserts.extend(updated)
        if not upserts:
            return set()
        fenced = self._fenced(connection, batch, upserts)
        rows = [full_row(record) for record in upserts if record.job_id not in fenced]
        if rows:
            connection.exec_driver_sql(self._sql.upsert, rows)
        return fenced

    def _fenced(
        self, connection: sa.Connection, batch: _Batch, records: list[JobRecord]
    ) -> set[str]:
        """The jobs among ``records`` whose rows have another owner or epoch than expected
        (rows locked from here to the commit)."""
        fenced: set[str] = set()
        for at in range(0, len(records), _ABSENT_CHUNK):
            chunk = {record.job_id: record for record in records[at : at + _ABSENT_CHUNK]}
            statement = self._sql.owners(len(chunk))
            for job_id, owner, epoch in connection.exec_driver_sql(statement, tuple(chunk)):
                if (owner, epoch) != batch.expects[job_id]:
                    fenced.add(job_id)
        return fenced

    def _remember(self, batch: _Batch, skipped: dict[int, JobRecord], fenced: set[str]) -> None:
        """After a commit: remember the rows of unfinished jobs, forget finished ones."""
        known = self._committed
        for job_id in fenced:
            known.pop(job_id, None)
        if len(known) > _REMEMBER_LIMIT:
            known.clear()
        for job_id, record in batch.intent_rows(skipped).items():
            if job_id not in batch.rows:
                known[job_id] = record
        known.update(batch.rows)
        for job_id in fenced:
            known.pop(job_id, None)
        for job_id, record in batch.rows.items():
            if job_id in fenced:
                continue
            # Most rows have a live phase, and then the job is unfinished: skip the full rule.
            maybe_finished = (
                record.phase in TERMINAL_PHASES or record.create_state in NO_EXTERNAL_JOB
            )
            if maybe_finished and not is_unfinished(record):
                del known[job_id]

    def setting(self, name: str, default: str) -> str:
        """The stored value of setting ``name``; ``default`` is stored first when none is.

        One conditional insert and a read in one transaction: concurrent callers (replicas
        starting together) all get the value that was stored first.
        """
        insert = (
            postgresql.insert(settings)
            if self.engine.dialect.name == "postgresql"
            else sqlite.insert(settings)
        )
        with self.engine.begin() as connection:
            connection.execute(
                insert.values(name=name, value=default).on_conflict_do_nothing(
                    index_elements=["name"]
                )
            )
            value = connection.execute(
                sa.select(settings.c.value).where(settings.c.name == name)
            ).scalar_one()
        return str(value)

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
        """Jobs the supervisor still owes work (see ``Journal.unfinished``), oldest first.

        Shaped for resume, which reads every unfinished job: driver rows made into records
        directly, and remembered as the writer's known rows (never replacing one it knows),
        so the ``resumed`` puts that follow are UPDATEs of ``updated_at`` rather than whole
        rows. A row changed since it was read fails the UPDATE's guard and is written whole.
        """
        with self.engine.connect() as connection:
            rows = connection.exec_driver_sql(self._sql.unfinished()).fetchall()
        records = [record_of_tuple(row) for row in rows]
        known = self._committed
        if len(known) + len(records) <= _REMEMBER_LIMIT:
            for record in records:
                known.setdefault(record.job_id, record)
        return records

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

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        """Jobs matching every filter of ``query``, newest (by ``created_at``) first; the
        connector's name matches in any case."""
        criteria: list[sa.ColumnElement[bool] | sa.TextClause] = []
        if query.phase is not None:
            criteria.append(jobs.c.phase == query.phase)
        if query.task_type is not None:
            criteria.append(jobs.c.task_type == query.task_type)
        if query.connector is not None:  # names are for people: any case finds them
            criteria.append(sa.func.lower(jobs.c.connector) == query.connector.lower())
        if query.older_than is not None:
            criteria.append(jobs.c.created_at < query.older_than)
        if query.unfinished:
            criteria.append(sa.text(f"({UNFINISHED})"))  # its ORs must not bind to the ANDs
        newest_first = (jobs.c.created_at.desc(), jobs.c.job_id.desc())
        return self._jobs(*criteria, order_by=newest_first, limit=query.limit, offset=query.offset)

    def _jobs(
        self,
        *criteria: sa.ColumnElement[bool] | sa.TextClause,
        order_by: Iterable[sa.ColumnElement[Any]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        query = sa.select(*(jobs.c[name] for name in RECORD_FIELDS)).where(*criteria)
        query = query.order_by(*order_by).limit(limit).offset(offset or None)
        with self.engine.connect() as connection:
            return [record_of(row._mapping) for row in connection.execute(query)]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``Store.commit`` did not apply, by the index of the write."""

    skipped: dict[int, JobRecord]  # conditional puts whose job had a row: that row
    fenced: frozenset[int]  # puts refused: their job's row has another owner or epoch


@dataclass(frozen=True, slots=True)
class IfAbsent:
    """A put that ``Store.commit`` applies only when its job has no row yet."""

    put: Put


class _Batch:
    """One commit's writes, resolved in order: what each job's row becomes, which conditional
    puts the batch itself decides, and which ones the database must decide (``intents``)."""

    def __init__(self, writes: Sequence[Put | IfAbsent]) -> None:
        self.writes = writes
        self.rows: dict[str, JobRecord] = {}  # the last unconditional put of each job
        self.expects: dict[str, tuple[str | None, int]] = {}  # the owner and epoch each
        # job's row must have: its first put's ``expect``, else that put's record's own
        self.intents: dict[str, int] = {}  # job -> index of a conditional put first to write it
        self.decided: dict[int, JobRecord | int] = {}  # index -> the row it finds, or the
        # index of the intent whose outcome is that row
        for index, write in enumerate(writes):
            if type(write) is Put:
                self.rows[write.record.job_id] = write.record
                self.expects.setdefault(write.record.job_id, write.expect or _fence(write.record))
                continue
            assert isinstance(write, IfAbsent)
            job_id = write.put.record.job_id
            if job_id in self.rows:
                self.decided[index] = self.rows[job_id]
            elif job_id in self.intents:
                self.decided[index] = self.intents[job_id]
            else:
                self.intents[job_id] = index

    def indexes_of(self, job_ids: set[str]) -> list[int]:
        """The indexes of the unconditional puts of ``job_ids``."""
        if not job_ids:
            return []
        return [
            index
            for index, write in enumerate(self.writes)
            if type(write) is Put and write.record.job_id in job_ids
        ]

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

    def events(self, left_out: Collection[int]) -> list[tuple[Any, ...]]:
        """The event rows of every write but those at ``left_out``."""
        if not left_out:
            return [event_row(self.put(index)) for index in range(len(self.writes))]
        return [
            event_row(self.put(index)) for index in range(len(self.writes)) if index not in left_out
        ]


def _fence(record: JobRecord) -> tuple[str | None, int]:
    return (record.owner, record.epoch)


def _first(records: list[JobRecord]) -> JobRecord | None:
    return records[0] if records else None
