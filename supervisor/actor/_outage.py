"""Journal faults are outages to wait out, never a reason to drop what an actor holds.

When a journal write fails (disk full, EIO, a read-only file, PostgreSQL down), the actor
keeps the result it was writing (a created job's resource_meta, a poll's report, an intent
to cancel) and retries the write with backoff until it commits; it publishes nothing
meanwhile, so no caller sees a state the journal does not hold. Callers waiting on it are
answered UNAVAILABLE (retryable). ``JournalFaults`` counts the writes held back across every
actor: health reports NOT_SERVING while there are any, and metrics show them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["JOURNAL_RETRY_INTERVAL", "JOURNAL_RETRY_MAX", "JournalFaults", "journal_unavailable"]

#: A failed journal write is retried after 2 * this, then twice as long each time ...
JOURNAL_RETRY_INTERVAL = 0.25
#: ... up to this many seconds between two tries.
JOURNAL_RETRY_MAX = 5.0


def journal_unavailable(exc: BaseException) -> str:
    """The one line a caller gets while the journal fails."""
    cause = exc.__cause__ or exc
    text = str(cause) or type(cause).__name__
    return f"the journal is unavailable ({text}); retry"


class JournalFaults:
    """Journal writes held back by a fault, across all actors of one supervisor."""

    __slots__ = ("_errors", "_waiting_gauge", "last_error", "waiting")

    def __init__(self, errors: Counter | None = None, waiting: Gauge | None = None) -> None:
        self._errors = errors
        self._waiting_gauge = waiting
        self.waiting = 0
        self.last_error = ""

    def failed(self, exc: BaseException) -> None:
        """One journal operation failed."""
        self.last_error = journal_unavailable(exc)
        if self._errors is not None:
            self._errors.inc()

    def hold(self) -> None:
        """An actor starts waiting out a fault."""
        self.waiting += 1
        if self._waiting_gauge is not None:
            self._waiting_gauge.inc()

    def release(self) -> None:
        """An actor's write committed (or it was stopped)."""
        self.waiting -= 1
        if self._waiting_gauge is not None:
            self._waiting_gauge.dec()

    def fault(self) -> str | None:
        """What is wrong while any actor waits for the journal; None when none does."""
        return self.last_error if self.waiting else None
