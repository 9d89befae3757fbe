"""A journal wrapper that fails on demand, for the journal-fault tests.

``FaultyJournal(inner)`` passes every call to ``inner`` (any ``JournalLike``) until the
test calls ``fail``; from then on every read and write raises ``JournalError`` caused by
the given ``OSError`` (what the real journal raises when its disk is full, its file is
read-only or its database is down), committing nothing, until ``heal``. It counts what it
refused. A ``JournalProxy`` whose hook refuses.
"""

from __future__ import annotations

from supervisor.journal import JournalCall, JournalError, JournalLike, JournalProxy

__all__ = ["FaultyJournal"]


class FaultyJournal(JournalProxy):
    def __init__(self, inner: JournalLike) -> None:
        super().__init__(inner)
        self.cause: OSError | None = None
        self.refused = 0

    def fail(self, cause: OSError) -> None:
        """From now on every call fails with ``cause``."""
        self.cause = cause

    def heal(self) -> None:
        self.cause = None

    async def before(self, call: JournalCall) -> None:
        if self.cause is not None:
            self.refused += 1
            raise JournalError(f"journal commit failed: {self.cause}") from self.cause
