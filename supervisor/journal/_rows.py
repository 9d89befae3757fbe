"""The writer's SQL and rows: statements as driver SQL, and records as parameter tuples.

Shaped for the writer's hot path (``Store.commit``): statements are strings executed with
tuples, so no SQLAlchemy processing happens per row; on PostgreSQL a batch's UPDATE and
event INSERT each take one array per column (``unnest``), one statement for the batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from ._records import CreateState, DeleteState, JobRecord, Put
from ._rules import UNFINISHED
from ._schema import jobs

__all__ = [
    "COLUMNS",
    "EVENT_COLUMNS",
    "FENCE",
    "RECORD_FIELDS",
    "ROWS_PER_STATEMENT",
    "STABLE",
    "UPDATED",
    "UPDATED_AT",
    "UPDATED_INDEXES",
    "Sql",
    "event_row",
    "full_row",
    "meta_key",
    "mutable_columns",
    "record_of",
    "record_of_tuple",
    "stable_columns",
]

RECORD_FIELDS = tuple(column.name for column in jobs.c if column.name not in ("meta_key", "live"))


def meta_key(task_type: str, version: int, resource_meta: bytes) -> str:
    """The sha256 hex digest that indexes a job by the resource_meta a caller holds."""
    prefix = task_type.encode()
    digest = hashlib.sha256(b"%d:%s:%d:" % (len(prefix), prefix, version))
    digest.update(resource_meta)
    return digest.hexdigest()


COLUMNS = (*RECORD_FIELDS, "meta_key")  # the full row written (``live`` is computed)
STABLE = (
    *("task_type", "task_type_version", "connector", "created_at"),
    *("resource_meta", "create_request", "outputs"),
    *("owner", "lease_until"),
)
"""Columns an UPDATE leaves alone: the identity, resource_meta (meta_key follows it), the
two blobs, which a job's transitions rarely change (outputs: once, at the end), and the
owner and lease. A put that changes one writes the whole row (fenced: see ``Store``); a put
without a create_request changes none (it keeps the journalled one)."""
FENCE = ("owner", "epoch")
"""Columns an UPDATE never sets but requires: the row must still be the writer's."""
UPDATED = tuple(name for name in RECORD_FIELDS if name not in (*STABLE, *FENCE, "job_id"))
UPDATED_INDEXES = range(len(UPDATED))
UPDATED_AT = (UPDATED.index("updated_at"),)
EVENT_COLUMNS = ("job_id", "at", "kind", "phase", "detail")
ROWS_PER_STATEMENT = 500  # of the writer's UPDATEs (at most 12 parameters a row) and events


class Sql:
    """The writer's statements as driver SQL (executed with tuples, no per-row processing)."""

    def __init__(self, dialect: str) -> None:
        self.mark = "%s" if dialect == "postgresql" else "?"
        self.values = f"({', '.join([self.mark] * len(COLUMNS))})"
        columns = ", ".join(COLUMNS)
        replace = ", ".join(
            # A put without the request keeps the journalled one (``JobRecord.create_request``).
            f"{name} = COALESCE(excluded.{name}, jobs.{name})"
            if name == "create_request"
            else f"{name} = excluded.{name}"
            for name in COLUMNS
            if name != "job_id"
        )
        self.insert = f"INSERT INTO jobs ({columns}) VALUES "
        self.upsert = f"{self.insert}{self.values} ON CONFLICT (job_id) DO UPDATE SET {replace}"
        # One statement per batch (or per ROWS_PER_STATEMENT rows), not one per row: SQLite
        # gets multi-row VALUES, PostgreSQL arrays (a column each; even pipelined, it runs
        # every statement of an executemany on its own).
        self.columnar = dialect == "postgresql"
        self._updates: dict[tuple[int, ...], str] = {}

    def update(
        self, changed: tuple[int, ...], rows: list[tuple[Any, ...]]
    ) -> Iterator[tuple[str, Any]]:
        """Statements and parameters that UPDATE the ``UPDATED`` columns at ``changed`` of
        ``rows``: their values, then the job id, the ``updated_at`` the row must still have,
        and the owner and epoch it must still have (else it is left alone: see the row
        count)."""
        columns = (*(UPDATED[i] for i in changed), "job_id", "seen", *FENCE)
        if self.columnar:
            assignments = ", ".join(f"{name} = v.{name}" for name in columns[:-4])
            where = (
                "jobs.job_id = v.job_id AND jobs.updated_at = v.seen"
                " AND jobs.owner IS NOT DISTINCT FROM v.owner AND jobs.epoch = v.epoch"
            )
            source = _unnest(columns)
            yield f"UPDATE jobs SET {assignments} FROM {source} WHERE {where}", _arrays(rows)
            return
        # SQLite names the columns of VALUES column1, column2, ...; the statement must start
        # with UPDATE (not WITH) for sqlite3 to report its row count.
        names = [f"v.column{n}" for n in range(1, len(columns) + 1)]
        assignments = ", ".join(f"{c} = {v}" for c, v in zip(columns[:-4], names, strict=False))
        where = (
            f"jobs.job_id = {names[-4]} AND jobs.updated_at = {names[-3]}"
            f" AND jobs.owner IS {names[-2]} AND jobs.epoch = {names[-1]}"
        )
        for chunk in _chunks(rows):
            values = self._values(len(columns), len(chunk))
            yield (
                f"UPDATE jobs SET {assignments} FROM (VALUES {values}) AS v WHERE {where}",
                tuple(itertools.chain.from_iterable(chunk)),
            )

    def insert_events(self, rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, Any]]:
        """Statements and parameters that append ``rows`` to events, in order."""
        columns = ", ".join(EVENT_COLUMNS)
        if not rows:
            return
        if self.columnar:
            source = _unnest(EVENT_COLUMNS)
            yield (
                f"INSERT INTO events ({columns}) SELECT {columns} FROM {source} ORDER BY n",
                (_arrays(rows)),
            )
            return
        for chunk in _chunks(rows):
            values = self._values(len(EVENT_COLUMNS), len(chunk))
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

    def owners(self, rows: int) -> str:
        """The owner and epoch of ``rows`` jobs, locked until the transaction ends (on
        PostgreSQL; SQLite has one writer)."""
        marks = ", ".join([self.mark] * rows)
        lock = " FOR UPDATE" if self.columnar else ""
        return f"SELECT job_id, owner, epoch FROM jobs WHERE job_id IN ({marks}){lock}"

    def unfinished(self) -> str:
        """Every unfinished job's row (``RECORD_FIELDS``), oldest first."""
        return (
            f"SELECT {', '.join(RECORD_FIELDS)} FROM jobs WHERE {UNFINISHED}"
            " ORDER BY created_at, job_id"
        )

    def select(self, rows: int) -> str:
        marks = ", ".join([self.mark] * rows)
        return f"SELECT {', '.join(RECORD_FIELDS)} FROM jobs WHERE job_id IN ({marks})"


_PG_TYPES = {
    "attempt": "int",
    "phase": "int",
    "updated_at": "float8",
    "deadline": "float8",
    "finished_at": "float8",
    "lease_until": "float8",
    "epoch": "int",
    "at": "float8",
    "seen": "float8",
}


def _unnest(columns: Sequence[str]) -> str:
    arrays = ", ".join(f"%s::{_PG_TYPES.get(name, 'text')}[]" for name in columns)
    return f"unnest({arrays}) WITH ORDINALITY AS v({', '.join(columns)}, n)"


def _arrays(rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    return tuple(map(list, zip(*rows, strict=True)))


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for at in range(0, len(rows), ROWS_PER_STATEMENT):
        yield rows[at : at + ROWS_PER_STATEMENT]


def stable_columns(record: JobRecord, before: JobRecord | None = None) -> tuple[Any, ...]:
    """The ``STABLE`` columns (and the epoch) of ``record``; ``before``: the row it replaces,
    whose request a put without one keeps."""
    request = record.create_request
    if request is None and before is not None:
        request = before.create_request
    return (
        record.task_type,
        record.task_type_version,
        record.connector,
        record.created_at,
        record.resource_meta,
        request,
        record.outputs,
        record.owner,
        record.lease_until,
        record.epoch,
    )


def full_row(record: JobRecord) -> tuple[Any, ...]:
    """The whole row, in ``COLUMNS`` order; meta_key is computed only here."""
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
        record.epoch,
        None if meta is None else meta_key(record.task_type, record.task_type_version, meta),
    )


def mutable_columns(record: JobRecord) -> tuple[Any, ...]:
    """The ``UPDATED`` columns of ``record``, as parameters."""
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
    )


def event_row(put: Put) -> tuple[Any, ...]:
    record = put.record
    return (record.job_id, record.updated_at, put.kind, record.phase, put.detail)


_CREATE_STATE, _DELETE_STATE = (
    RECORD_FIELDS.index("create_state"),
    RECORD_FIELDS.index("delete_state"),
)
if tuple(field.name for field in dataclasses.fields(JobRecord)) != RECORD_FIELDS:
    raise RuntimeError("JobRecord's fields are not the jobs table's columns, in order")


def record_of_tuple(row: Sequence[Any]) -> JobRecord:
    """The record of a driver row in ``RECORD_FIELDS`` order (no SQLAlchemy processing:
    resume reads every unfinished job)."""
    values = list(row)
    values[_CREATE_STATE] = CreateState(values[_CREATE_STATE])
    values[_DELETE_STATE] = DeleteState(values[_DELETE_STATE])
    return JobRecord(*values)


def record_of(row: Any) -> JobRecord:
    values = dict(row)
    values["create_state"] = CreateState(values["create_state"])
    values["delete_state"] = DeleteState(values["delete_state"])
    return JobRecord(**values)
