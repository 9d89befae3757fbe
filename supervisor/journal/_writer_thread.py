"""The journal writer's own thread: its transactions, one at a time, without a thread hop each.

``trio.to_thread.run_sync`` per batch takes a limiter slot, copies the context, hands the
call to a cached worker and back: a cost per commit that shows when batches are small (one
put per commit at low concurrency). A writer commits one batch at a time, so one long-lived
thread fed by a queue does the same work; the waiting task is rescheduled with the call's
outcome from the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

__all__ = ["WriterThread"]

_T = TypeVar("_T")

#: A call for the thread: the function, its argument, and whom to wake with its outcome.
_Call = tuple[Callable[[Any], Any], Any, trio.lowlevel.Task, trio.lowlevel.TrioToken]


class WriterThread:
    """One daemon thread running ``run``'s calls in order; started on first use.

    Use it from one Trio task at a time (the writer's); ``stop`` once that task is done.
    """

    __slots__ = ("_calls", "_thread")

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[Any], _T], arg: Any) -> _T:
        """``fn(arg)`` in the thread; its result or its exception.

        Cancellation: not interruptible once submitted (as ``trio.to_thread.run_sync``
        without ``abandon_on_cancel``): the call finishes first, then any cancellation is
        delivered at the caller's next checkpoint.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="journal-writer", daemon=True)
            self._thread.start()
        task = trio.lowlevel.current_task()
        self._calls.put((fn, arg, task, trio.lowlevel.current_trio_token()))

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED

        result: _T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def stop(self) -> None:
        """Let the thread end once its calls are done (it is idle when the writer is)."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread = None

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, arg, task, token = call
            result = outcome.capture(fn, arg)
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)
