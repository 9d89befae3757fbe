"""One timer for all the actors of a connector: a heap of due times and one task that wakes
each actor when its time comes.

Shaped for 100,000 idle actors. A sleeping actor is a parked Trio task (no cancel scope, no
deadline of its own, no exception to end the sleep) and one heap entry; ``Timers.run`` is
the only task with a Trio deadline, the earliest due time, and wakes every actor that is due
in one pass. The actor's ``Inbox`` parks it (``Inbox.park``) and wakes it early when a
message comes; a stale entry (an actor woken early, or cancelled) is dropped when it is due.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

__all__ = ["Sleeper", "Timers"]


class Sleeper(Protocol):
    def fire(self, generation: int) -> None:
        """The time of the sleep numbered ``generation`` has come (ignored if it is over)."""


class Caller(Protocol):
    def expire(self) -> None:
        """The call in flight outlived its deadline."""


class Timers:
    """Due times of parked actors, and the task that wakes them (``run``, which ``start``
    starts in the actors' nursery unless it runs already)."""

    __slots__ = ("_calls", "_heap", "_next", "_order", "_running", "_scope")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Sleeper, int]] = []
        self._order = itertools.count()  # ties of due times keep their order
        self._next = math.inf  # when ``run`` wakes next
        self._scope: trio.CancelScope | None = None  # ``run``'s sleep
        self._running = False
        # Calls in flight (at most the connector's cap) and their deadlines; one timeout for
        # all of them, so the first is the one to expire first.
        self._calls: dict[Caller, float] = {}

    def start(self, nursery: trio.Nursery) -> None:
        """Run ``run`` in ``nursery``, unless it runs (or is about to) already."""
        if not self._running:
            self._running = True
            nursery.start_soon(self.run)

    def add(self, when: float, sleeper: Sleeper, generation: int) -> None:
        """Call ``sleeper.fire(generation)`` at ``when`` (Trio time)."""
        heapq.heappush(self._heap, (when, next(self._order), sleeper, generation))
        if when < self._next:
            self._next = when
            if self._scope is not None:
                self._scope.cancel()  # wake ``run`` to sleep less long

    def begin_call(self, caller: Caller, deadline: float) -> None:
        """Call ``caller.expire()`` at ``deadline`` unless ``end_call`` comes first.

        Deadlines must come in the order of the calls (one call timeout per connector).
        """
        self._calls[caller] = deadline
        if deadline < self._next:
            self._next = deadline
            if self._scope is not None:
                self._scope.cancel()

    def end_call(self, caller: Caller) -> None:
        self._calls.pop(caller, None)

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        """Wake the sleepers as they fall due, until cancelled."""
        self._running = True
        heap = self._heap
        try:
            while True:
                now = trio.current_time()
                while heap and heap[0][0] <= now:
                    _, _, sleeper, generation = heapq.heappop(heap)
                    sleeper.fire(generation)
                self._next = heap[0][0] if heap else math.inf
                calls = self._calls
                while calls:
                    caller, deadline = next(iter(calls.items()))
                    if deadline > now:
                        self._next = min(self._next, deadline)
                        break
                    del calls[caller]
                    caller.expire()
                with trio.CancelScope(deadline=self._next) as self._scope:
                    await trio.sleep_forever()
                self._scope = None
        finally:
            self._scope = None
            self._running = False
