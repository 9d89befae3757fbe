"""The journal's errors: ``JournalError`` and its kinds."""

from __future__ import annotations

__all__ = ["JournalError", "JournalLost", "JournalURLError"]


class JournalError(Exception):
    """The journal could not do what was asked; the cause is in ``__cause__``.

    A failed write means none of its puts were committed: the caller may retry them.
    """


class JournalURLError(JournalError, ValueError):
    """``--journal`` is not a URL of a journal we can use; the message says what to write."""


class JournalLost(JournalError):
    """The journal is no longer the database that was opened: its SQLite file was deleted
    or replaced, or its tables are gone. Nothing can be committed any more; it never comes
    back (a new, empty journal must not be created under a running server)."""
