"""A journal in memory: the same Trio interface as ``Journal``, for unit tests and demos.

It commits each ``write`` at once (after one checkpoint) and counts what it did, so tests
on Trio's MockClock can assert exact write counts. ``fail_next`` injects a commit failure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import trio

from ._errors import FencedOut
from ._records import EventRecord, JobRecord, Put
from ._rules import is_unfinished

__all__ = ["InMemoryJournal"]


@dataclass
class _Counts:
    writes: int = 0
    puts: int = 0


class InMemoryJournal:
    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.history: list[EventRecord] = []
        self.counts = _Counts()
        self._fail_next: list[BaseException] = []
        self.settings: dict[str, str] = {}

    def fail_next(self, error: BaseException) -> None:
        """Make the next ``write`` raise ``error`` without committing anything."""
        self._fail_next.append(error)

    async def write(self, *puts: Put) -> None:
        await trio.lowlevel.checkpoint()
        if self._fail_next:
            raise self._fail_next.pop(0)
        applied = tuple(put for put in puts if not self._fenced(put))
        self._commit(applied)
        if len(applied) != len(puts):
            refused = (put.record.job_id for put in puts if put not in applied)
            raise FencedOut(tuple(dict.fromkeys(refused)))

    def _fenced(self, put: Put) -> bool:
        """As ``Journal``: an existing row is written only with the owner and epoch expected."""
        row = self.jobs.get(put.record.job_id)
        if row is None:
            return False
        expect = put.expect or (put.record.owner, put.record.epoch)
        return (row.owner, row.epoch) != expect

    async def write_if_absent(self, put: Put) -> JobRecord | None:
        """As ``Journal.write_if_absent``: commit ``put`` (and return ``None``) unless its job
        is known; else write nothing and return the job's record."""
        await trio.lowlevel.checkpoint()
        if self._fail_next:
            raise self._fail_next.pop(0)
        existing = self.jobs.get(put.record.job_id)
        if existing is None:
            self._commit((put,))
        return existing

    def _commit(self, puts: tuple[Put, ...]) -> None:
        self.counts.writes += 1
        for put in puts:
            self.counts.puts += 1
            record = put.record
            before = self.jobs.get(record.job_id)
            if record.create_request is None and before is not None:  # as ``Journal``: kept
                record = dataclasses.replace(record, create_request=before.create_request)
            self.jobs[record.job_id] = record
            self.history.append(
                EventRecord(
                    job_id=put.record.job_id,
                    seq=len(self.history) + 1,
                    at=put.record.updated_at,
                    kind=put.kind,
                    phase=put.record.phase,
                    detail=put.detail,
                )
            )

    async def setting(self, name: str, default: str) -> str:
        await trio.lowlevel.checkpoint()
        return self.settings.setdefault(name, default)

    async def get(self, job_id: str) -> JobRecord | None:
        await trio.lowlevel.checkpoint()
        return self.jobs.get(job_id)

    async def find_by_meta(
        self, task_type: str, version: int, resource_meta: bytes
    ) -> JobRecord | None:
        await trio.lowlevel.checkpoint()
        for record in self.jobs.values():
            if (record.task_type, record.task_type_version, record.resource_meta) == (
                task_type,
                version,
                resource_meta,
            ):
                return record
        return None

    async def unfinished(self) -> list[JobRecord]:
        await trio.lowlevel.checkpoint()
        return [r for r in self.jobs.values() if is_unfinished(r)]

    async def events(self, job_id: str) -> list[EventRecord]:
        await trio.lowlevel.checkpoint()
        return [e for e in self.history if e.job_id == job_id]

    def kinds(self, job_id: str) -> list[str]:
        """The event kinds of one job, in order (a test convenience)."""
        return [e.kind for e in self.history if e.job_id == job_id]
