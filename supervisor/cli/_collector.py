"""The cyclic garbage collector, tuned for 100,000 live actors.

CPython collects its oldest generation once a quarter as many objects as it holds have
been promoted into it since the last full collection. A parked actor's frames from its
last poll live a poll interval (30 s), long enough to be promoted, so with 10,000 live
jobs a full collection came every ~25 s and walked every live actor's objects (0.4 s of
CPU at 10,000 jobs, seconds at 100,000: the poll lag's tail). What survives a full
collection is the live actors and the process's long-lived state: ``freeze_survivors``
moves it, after each full collection, into the permanent generation that collections
never walk; it still dies by reference counting. Frozen objects that later form a garbage
cycle would be kept: a finished actor leaves none (checked with ``gc.collect()`` after
hundreds of jobs ended). Full collections then walk only what was promoted since the last
one, so they come more often and cost little.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_survivors"]


def _after_collection(phase: str, info: dict[str, int]) -> None:
    # Right after a full collection there is no unreachable cycle left to freeze.
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def freeze_survivors() -> None:
    """Freeze what lives now and what survives every later full collection (idempotent)."""
    gc.freeze()
    if _after_collection not in gc.callbacks:
        gc.callbacks.append(_after_collection)
