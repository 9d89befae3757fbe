"""Messages from the supervisor to a job's actor: a closed set of small frozen types, sent
through the actor's ``Inbox``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

__all__ = ["Cancel", "Credentials", "Inbox", "Message", "Reply"]


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
    that would read it about 3 KB more; this is three slots, and a list while it holds
    messages. There is no reader task: ``put`` wakes the actor by cancelling the scope it
    waits in (``waking``), and the actor takes its messages between two steps. Unbounded:
    every Cancel has a caller waiting for its reply, and Credentials are sent only when they
    change.
    """

    __slots__ = ("_messages", "_wake", "_wake_on_credentials")

    def __init__(self) -> None:
        self._messages: list[Message] | None = []
        self._wake: trio.CancelScope | None = None
        self._wake_on_credentials = False

    def put(self, message: Message) -> None:
        """Errors: trio.ClosedResourceError once the actor has ended."""
        if self._messages is None:
            raise trio.ClosedResourceError("the job's actor has ended")
        self._messages.append(message)
        if self._wake is not None and (
            self._wake_on_credentials or not isinstance(message, Credentials)
        ):
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

    def waking(self, *, on_credentials: bool = True, until: float = math.inf) -> trio.CancelScope:
        """A scope that a new message cancels (only a Cancel when not ``on_credentials``), with
        deadline ``until``.

        Enter it at once: a message already waiting cancels it on entry.
        """
        self._wake = trio.CancelScope(deadline=until)
        self._wake_on_credentials = on_credentials
        if self._messages and (
            on_credentials or any(isinstance(m, Cancel) for m in self._messages)
        ):
            self._wake.cancel()
        return self._wake

    def close(self) -> list[Message]:
        """No more messages: later ``put``s raise. Returns those never taken."""
        left, self._messages, self._wake = self._messages or [], None, None
        return left
