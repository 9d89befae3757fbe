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
hundreds of jobs ended), but an error path might: so once every ``THAW_INTERVAL`` the
frozen objects are handed back to the collector (``gc.unfreeze``) instead, the next full
collection walks everything once, frees any such cycle, and freezes what survives. A leak
is therefore bounded by what one interval can make, at the cost of one full walk an hour.
Full collections otherwise walk only what was promoted since the last one, so they come
more often and cost little.
"""

from __future__ import annotations

import gc
import time

__all__ = ["THAW_INTERVAL", "freeze_survivors"]

THAW_INTERVAL = 3600.0
"""Seconds between two full walks of the frozen objects (see the module's docstring)."""

_thawed_at = time.monotonic()
_thaw_interval = THAW_INTERVAL


def _after_collection(phase: str, info: dict[str, int]) -> None:
    global _thawed_at
    if phase != "stop" or info["generation"] != 2:
        return
    now = time.monotonic()
    if now - _thawed_at >= _thaw_interval:
        _thawed_at = now
        gc.unfreeze()  # the next full collection walks everything once
    else:
        # Right after a full collection there is no unreachable cycle left to freeze.
        gc.freeze()


def freeze_survivors(*, thaw_interval: float = THAW_INTERVAL) -> None:
    """Freeze what lives now and what survives every later full collection (idempotent);
    every ``thaw_interval`` seconds, a full collection hands the frozen back instead."""
    global _thaw_interval
    _thaw_interval = thaw_interval
    gc.freeze()
    if _after_collection not in gc.callbacks:
        gc.callbacks.append(_after_collection)
