"""A journal wrapper that fails on demand, for the journal-fault tests.

``FaultyJournal(inner)`` passes every call to ``inner`` (any ``JournalLike``) until the
test calls ``fail``; from then on every read and write raises ``JournalError`` caused by
the given ``OSError`` (what the real journal raises when its disk is full, its file is
read-only or its database is down), committing nothing, until ``heal``. It counts what it
refused.
"""

from __future__ import annotations

from supervisor.journal import EventRecord, JobRecord, JournalError, JournalLike, Put

__all__ = ["FaultyJournal"]


class FaultyJournal:
    def __init__(self, inner: JournalLike) -> None:
        self.inner = inner
        self.cause: OSError | None = None
        self.refused = 0

    def fail(self, cause: OSError) -> None:
        """From now on every call fails with ``cause``."""
        self.cause = cause

    def heal(self) -> None:
        self.cause = None

    def _check(self) -> None:
        if self.cause is not None:
            self.refused += 1
            raise JournalError(f"journal commit failed: {self.cause}") from self.cause

    async def write(self, *puts: Put) -> None:
        self._check()
        await self.inner.write(*puts)

    async def write_if_absent(self, put: Put) -> JobRecord | None:
        self._check()
        return await self.inner.write_if_absent(put)

    async def setting(self, name: str, default: str) -> str:
        self._check()
        return await self.inner.setting(name, default)

    async def get(self, job_id: str) -> JobRecord | None:
        self._check()
        return await self.inner.get(job_id)

    async def find_by_meta(
        self, task_type: str, version: int, resource_meta: bytes
    ) -> JobRecord | None:
        self._check()
        return await self.inner.find_by_meta(task_type, version, resource_meta)

    async def unfinished(self) -> list[JobRecord]:
        self._check()
        return await self.inner.unfinished()

    async def events(self, job_id: str) -> list[EventRecord]:
        self._check()
        return await self.inner.events(job_id)
