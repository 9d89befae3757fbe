"""Messages from the supervisor to a job's actor: a closed set of small frozen types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

__all__ = ["Cancel", "Credentials", "Message", "Reply"]


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
    """DeleteTask: cancel the external job. ``reply`` is set once the intent is journalled."""

    kwargs: Mapping[str, str]
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Secrets and configs from a request's ``connection``: kept in the actor's memory only."""

    kwargs: Mapping[str, str]


Message = Cancel | Credentials
