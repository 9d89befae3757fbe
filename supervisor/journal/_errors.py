"""The journal's errors: a failed operation and its kinds, and a write fenced out by a
new owner."""

from __future__ import annotations

__all__ = ["FencedOut", "JournalError", "JournalLost", "JournalURLError"]


class JournalError(Exception):
    """The journal could not do what was asked; the cause is in ``__cause__``.

    A failed write means none of its puts were committed: the caller may retry them.
    """


class JournalURLError(JournalError, ValueError):
    """``--journal`` is not a URL of a journal we can use; the message says what to write."""


class FencedOut(Exception):
    """A write was refused: its job's row no longer has the writer's owner and epoch.

    Another replica adopted the job (or this one released it). Not a ``JournalError``: it
    is never retried; the actor that made the write must stop at once, without touching
    its external job. ``job_ids``: the jobs whose puts were refused (nothing of theirs was
    written; the request's other puts were).
    """

    def __init__(self, job_ids: tuple[str, ...]) -> None:
        super().__init__(f"fenced out: job(s) {', '.join(job_ids)} now belong to another owner")
        self.job_ids = job_ids


class JournalLost(JournalError):
    """The journal is no longer the database that was opened: its SQLite file was deleted
    or replaced, or its tables are gone. Nothing can be committed any more; it never comes
    back (a new, empty journal must not be created under a running server)."""
