"""The journal's one error type."""

from __future__ import annotations

__all__ = ["JournalError", "JournalLost"]


class JournalError(Exception):
    """The journal could not do what was asked; the cause is in ``__cause__``.

    A failed write means none of its puts were committed: the caller may retry them.
    """


class JournalLost(JournalError):
    """The journal is no longer the database that was opened: its SQLite file was deleted
    or replaced, or its tables are gone. Nothing can be committed any more; it never comes
    back (a new, empty journal must not be created under a running server)."""
