"""How long an actor waits before retrying a failed call: an immutable ``Backoff`` value.

A failure makes a new value (``failed``), a success goes back to ``NO_FAILURES``; each
loop that retries (polling, cancelling, journal writes) keeps its own value, so none of
them shares a counter with another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["BACKOFF_JITTER", "BACKOFF_MAX", "NO_FAILURES", "Backoff", "retry_after"]

#: Delay after the n-th consecutive failure: min(BACKOFF_MAX, interval * 2**n), times a
#: random factor in [1 - BACKOFF_JITTER, 1], and never less than the service's own
#: ``retry_after``.
BACKOFF_MAX = 300.0
BACKOFF_JITTER = 0.5


@dataclass(frozen=True, slots=True)
class Backoff:
    """Consecutive failures of one kind of call, and the service's last "not before"."""

    failures: int = 0
    retry_after: float = 0.0

    def failed(self, exc: BaseException) -> Backoff:
        """The value after one more failure, raising ``exc``."""
        return Backoff(self.failures + 1, retry_after(exc))

    def delay(self, interval: float, rng: random.Random, *, cap: float = BACKOFF_MAX) -> float:
        """Seconds until the next call, for a call made every ``interval`` when it succeeds
        (at most ``cap`` before jitter, unless the service asked for longer)."""
        if not self.failures:
            return interval
        backoff = min(cap, interval * 2.0**self.failures)
        jittered = backoff * (1 - BACKOFF_JITTER * rng.random())
        return max(jittered, self.retry_after)


NO_FAILURES = Backoff()


def retry_after(exc: BaseException) -> float:
    """A transient error's ``retry_after`` (seconds), e.g. from an HTTP Retry-After header."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0
