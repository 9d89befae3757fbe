"""What the supervisor needs from a journal (``Journal`` and ``InMemoryJournal`` both fit)."""

from __future__ import annotations

from typing import Protocol

from ._records import EventRecord, JobRecord, Put

__all__ = ["JournalLike"]


class JournalLike(Protocol):
    async def write(self, *puts: Put) -> None:
        """Return once every put is committed. Errors: the commit's failure."""

    async def write_if_absent(self, put: Put) -> JobRecord | None:
        """Commit ``put`` unless its job is known: ``None``; else the job's record, unchanged."""

    async def setting(self, name: str, default: str) -> str:
        """The stored value of setting ``name``; ``default`` is stored first when none is."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def find_by_meta(
        self, task_type: str, version: int, resource_meta: bytes
    ) -> JobRecord | None: ...

    async def unfinished(self) -> list[JobRecord]: ...

    async def events(self, job_id: str) -> list[EventRecord]: ...
