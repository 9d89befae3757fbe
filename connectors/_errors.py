"""Exceptions a connector raises to tell the supervisor what kind of failure it met."""

from __future__ import annotations

__all__ = ["JobNotFound", "PermanentError"]


class PermanentError(Exception):
    """Retrying will not help (bad query, permission denied): the job fails with this message.

    Any other exception from ``get`` or ``delete`` is treated as transient and retried with
    backoff.
    """


class JobNotFound(Exception):
    """The external service does not know the job: from ``delete`` it counts as deleted."""
