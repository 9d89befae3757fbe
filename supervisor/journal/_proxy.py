"""``JournalProxy``: a ``JournalLike`` that passes every call on to another, after a hook.

For journals that misbehave on purpose: the journal-fault tests (a journal that is down)
and the in-process recovery check, ``supervisor.verify`` (commits that take time; a
crashed process's journal, which commits nothing). Subclass it and override ``before``:
it runs before each call is passed on and may wait (latency), raise (refuse the call) or
count. Here, beside ``JournalLike``, so that every layer and the tests can use it, and so
that one class follows the protocol when it grows.
"""

from __future__ import annotations

from enum import StrEnum

from ._protocol import JournalLike
from ._records import EventRecord, JobRecord, Put

__all__ = ["JOURNAL_WRITES", "JournalCall", "JournalProxy"]


class JournalCall(StrEnum):
    """A ``JournalLike`` method, by its name, as ``JournalProxy.before`` is told it."""

    WRITE = "write"
    WRITE_IF_ABSENT = "write_if_absent"
    SETTING = "setting"
    GET = "get"
    FIND_BY_META = "find_by_meta"
    UNFINISHED = "unfinished"
    EVENTS = "events"


#: The calls that commit.
JOURNAL_WRITES = frozenset({JournalCall.WRITE, JournalCall.WRITE_IF_ABSENT})


class JournalProxy:
    """Every ``JournalLike`` call goes to ``inner`` once ``before`` has returned."""

    def __init__(self, inner: JournalLike) -> None:
        self.inner = inner

    async def before(self, call: JournalCall) -> None:
        """The hook, run before ``call`` is passed on; raise to refuse it. Does nothing."""

    async def write(self, *puts: Put) -> None:
        await self.before(JournalCall.WRITE)
        await self.inner.write(*puts)

    async def write_if_absent(self, put: Put) -> JobRecord | None:
        await self.before(JournalCall.WRITE_IF_ABSENT)
        return await self.inner.write_if_absent(put)

    async def setting(self, name: str, default: str) -> str:
        await self.before(JournalCall.SETTING)
        return await self.inner.setting(name, default)

    async def get(self, job_id: str) -> JobRecord | None:
        await self.before(JournalCall.GET)
        return await self.inner.get(job_id)

    async def find_by_meta(
        self, task_type: str, version: int, resource_meta: bytes
    ) -> JobRecord | None:
        await self.before(JournalCall.FIND_BY_META)
        return await self.inner.find_by_meta(task_type, version, resource_meta)

    async def unfinished(self) -> list[JobRecord]:
        await self.before(JournalCall.UNFINISHED)
        return await self.inner.unfinished()

    async def events(self, job_id: str) -> list[EventRecord]:
        await self.before(JournalCall.EVENTS)
        return await self.inner.events(job_id)
