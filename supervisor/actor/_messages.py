"""Messages from the supervisor to a job's actor: a closed set of small frozen types, sent
through the actor's ``Inbox``."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

import trio

from ._timers import Timers

__all__ = ["Cancel", "Credentials", "Inbox", "Latch", "Message", "Reply"]


class Latch:
    """A ``trio.Event`` that is made only when someone waits before it is set.

    Shaped for 100,000 live jobs: an Event costs ~270 B (its set of waiters), and the
    latches of a live job (its create settled, its first poll, its actor ended) are set
    before anyone waits on them, or never waited on at all; this is two slots.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: trio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            event, self._event = self._event, None
            if event is not None:
                event.set()

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()


class Reply:
    """A one-shot answer: the actor sets it once, the sender waits for it."""

    __slots__ = ("_done", "error")

    def __init__(self) -> None:
        self._done = trio.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        if not self._done.is_set():
            self.error = error
            self._done.set()

    async def wait(self) -> None:
        """Errors: re-raises the error the actor answered with."""
        await self._done.wait()
        if self.error is not None:
            raise self.error


@dataclass(frozen=True, slots=True)
class Cancel:
    """DeleteTask: cancel the external job. ``reply`` is set once the intent is journalled.

    ``reason``: why, when the supervisor cancels on its own (a superseded attempt); it is
    the job's message from then on.
    """

    kwargs: Mapping[str, str]
    reply: Reply = field(default_factory=Reply)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    """Secrets and configs from a request's ``connection``: kept in the actor's memory only."""

    kwargs: Mapping[str, str]


Message = Cancel | Credentials


class Inbox:
    """One actor's channel: the supervisor puts messages in, the actor takes them out.

    Shaped for 100,000 live actors. Trio's memory channel costs about 1.8 KB, and the task
    that would read it about 3 KB more; this is a few slots, and a list while it holds
    messages. There is no reader task: ``put`` wakes the actor, parked in ``park`` (a sleep)
    or in a call a Cancel interrupts (the scope ``arm`` names), and the actor takes its
    messages between two steps. Unbounded: every Cancel has a caller waiting for its reply,
    and Credentials are sent only when they change.
    """

    __slots__ = ("_generation", "_messages", "_parked", "_wake", "_wake_on_credentials")

    def __init__(self) -> None:
        self._messages: list[Message] | None = []
        self._wake: trio.CancelScope | None = None
        self._wake_on_credentials = False
        self._parked: trio.lowlevel.Task | None = None  # the actor, asleep in ``park``
        self._generation = 0  # numbers the sleeps: a timer of an earlier one is stale

    def put(self, message: Message) -> None:
        """Errors: trio.ClosedResourceError once the actor has ended."""
        if self._messages is None:
            raise trio.ClosedResourceError("the job's actor has ended")
        self._messages.append(message)
        if self._wake_on_credentials or not isinstance(message, Credentials):
            if self._parked is not None:
                self._unpark()
            elif self._wake is not None:
                self._wake.cancel()

    def take(self) -> Message | None:
        """The oldest message, or None."""
        return self._messages.pop(0) if self._messages else None

    def pending(self) -> bool:
        return bool(self._messages)

    def refuse_cancels(self, error: BaseException) -> None:
        """Answer every queued Cancel with ``error`` and drop it (Credentials stay queued)."""
        if not self._messages:
            return
        kept: list[Message] = []
        for message in self._messages:
            if isinstance(message, Cancel):
                message.reply.set(error)
            else:
                kept.append(message)
        self._messages[:] = kept

    def arm(self, scope: trio.CancelScope) -> None:
        """Until ``disarm``, a Cancel cancels ``scope`` (at once if one is queued)."""
        self._wake = scope
        self._wake_on_credentials = False
        if self._waiting(on_credentials=False):
            scope.cancel()

    def disarm(self) -> None:
        self._wake = None

    def cancel_waiting(self) -> bool:
        """Whether a Cancel is queued."""
        return self._waiting(on_credentials=False)

    def _waiting(self, on_credentials: bool) -> bool:
        """Whether a queued message ends a wait (only a Cancel when not ``on_credentials``)."""
        messages = self._messages
        if not messages:
            return False
        return on_credentials or any(isinstance(m, Cancel) for m in messages)

    async def park(
        self, timers: Timers | None = None, until: float = math.inf, *, on_credentials: bool = True
    ) -> None:
        """Sleep until ``until`` (Trio time, kept by ``timers``) or until a message comes (only
        a Cancel when not ``on_credentials``); at once if one is queued.

        Hot path (every idle actor between two polls): a parked task and one entry in the
        connector's timer heap, where a cancel scope with a deadline would cost a scope, a
        deadline and an exception per sleep. Cancellation: as any sleep.
        """
        await self.parking(timers, until, on_credentials=on_credentials)

    def parking(
        self, timers: Timers | None = None, until: float = math.inf, *, on_credentials: bool = True
    ) -> Awaitable[object]:
        """``park``, for the task that calls it: await what it returns at once.

        Not a coroutine itself: it returns Trio's, so a sleeping actor's await chain has no
        frame of its own here (~300 B per idle actor at 100,000 jobs).
        """
        if self._waiting(on_credentials):
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
        self._generation += 1
        if until < math.inf:
            if timers is None:
                raise ValueError("a sleep with an end needs the timers that keep it")
            if until <= trio.current_time():
                return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
            timers.add(until, self, self._generation)
        self._wake_on_credentials = on_credentials
        self._parked = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort)  # noqa: ASYNC105 (as above)

    def fire(self, generation: int) -> None:
        """``Timers``: the sleep numbered ``generation`` is over (if it still lasts)."""
        if generation == self._generation and self._parked is not None:
            self._unpark()

    def _unpark(self) -> None:
        task, self._parked = self._parked, None
        assert task is not None
        self._generation += 1  # its timer, if any, is stale now
        trio.lowlevel.reschedule(task)

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._parked = None  # cancelled while asleep
        self._generation += 1
        return trio.lowlevel.Abort.SUCCEEDED

    def close(self) -> list[Message]:
        """No more messages: later ``put``s raise. Returns those never taken."""
        left, self._messages, self._wake = self._messages or [], None, None
        if self._parked is not None:
            self._unpark()
        return left
