"""The journal's one error type."""

from __future__ import annotations

__all__ = ["JournalError", "JournalURLError"]


class JournalError(Exception):
    """The journal could not do what was asked; the cause is in ``__cause__``.

    A failed write means none of its puts were committed: the caller may retry them.
    """


class JournalURLError(JournalError, ValueError):
    """``--journal`` is not a URL of a journal we can use; the message says what to write."""
