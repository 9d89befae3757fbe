"""One timer for all the actors of a connector: a heap of due times and one task that wakes
each actor when its time comes.

Shaped for 100,000 idle actors. A sleeping actor is a parked Trio task (no cancel scope, no
deadline of its own, no exception to end the sleep) and one heap entry; ``Timers.run`` is
the only task with a Trio deadline, the earliest due time, and wakes the actors that are due
``BATCH`` to a scheduler pass. The actor's ``Inbox`` parks it (``Inbox.park``) and wakes it
early when a message comes; a stale entry (an actor woken early, or cancelled) is dropped
when it is due.

``run`` wakes at most once per ``quantum`` (a due time falling sooner waits, never fires
early): each wake-up is a Trio deadline expiring, a cancellation and an exception, and
100,000 jobs polled every 30 s come due at thousands of distinct times a second. A sleep
may end up to ``quantum`` late.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

__all__ = ["QUANTUM", "Sleeper", "Timers"]

QUANTUM = 0.01
"""Seconds between two wake-ups of a connector's timer, at least."""
BATCH = 32
"""Sleepers woken in one scheduler pass, at most (half the default cap on calls in flight)."""


class Sleeper(Protocol):
    def fire(self, generation: int) -> None:
        """The time of the sleep numbered ``generation`` has come (ignored if it is over)."""


class Caller(Protocol):
    def expire(self) -> None:
        """The call in flight outlived its deadline."""


class Timers:
    """Due times of parked actors, and the task that wakes them (``run``, which ``start``
    starts in the actors' nursery unless it runs already)."""

    __slots__ = (
        "_calls",
        "_earliest",
        "_heap",
        "_next",
        "_order",
        "_quantum",
        "_running",
        "_scope",
    )

    def __init__(self, quantum: float = QUANTUM) -> None:
        self._heap: list[tuple[float, int, Sleeper, int]] = []
        self._order = itertools.count()  # ties of due times keep their order
        self._quantum = quantum
        self._next = math.inf  # when ``run`` wakes next
        self._earliest = -math.inf  # ``run`` wakes no sooner (one quantum after its last pass)
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
            self._wake_at(when)

    def begin_call(self, caller: Caller, deadline: float) -> None:
        """Call ``caller.expire()`` at ``deadline`` unless ``end_call`` comes first.

        Deadlines must come in the order of the calls (one call timeout per connector).
        """
        self._calls[caller] = deadline
        if deadline < self._next:
            self._wake_at(deadline)

    def _wake_at(self, when: float) -> None:
        """Make ``run`` wake sooner, at ``when`` (or one quantum after its last pass)."""
        when = max(when, self._earliest)
        if when < self._next:
            self._next = when
            if self._scope is not None:
                self._scope.deadline = when  # no wake-up of its own: the sleep is shorter

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
                woken = 0
                while heap and heap[0][0] <= now:
                    _, _, sleeper, generation = heapq.heappop(heap)
                    sleeper.fire(generation)
                    woken += 1
                    if woken % BATCH == 0:
                        # The next ones in the next pass: a batch of due actors larger than
                        # the connector's cap would park the rest in the limiter, whose
                        # slow path (a parking lot, an abort function) costs more per poll
                        # than the poll.
                        await trio.lowlevel.checkpoint()
                due = heap[0][0] if heap else math.inf
                calls = self._calls
                while calls:
                    caller, deadline = next(iter(calls.items()))
                    if deadline > now:
                        due = min(due, deadline)
                        break
                    del calls[caller]
                    caller.expire()
                self._earliest = now + self._quantum
                self._next = max(due, self._earliest)
                with trio.CancelScope(deadline=self._next) as self._scope:
                    await trio.sleep_forever()
                self._scope = None
        finally:
            self._scope = None
            self._earliest = -math.inf
            self._running = False
