"""The replica operations, Trio side: ``ReplicaStore`` calls in worker threads of their own.

They never queue behind the writer's batches or the readers: a heartbeat that waited for a
busy pool could make a healthy replica look dead. The engine keeps connections for them
(``Journal.open``), and notifications use one more, outside the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import sqlalchemy as sa
import trio

from ._errors import JournalError
from ._records import JobRecord
from ._replicas import Adopted, ReplicaStore

__all__ = ["REPLICA_CONNECTIONS", "ReplicaJournal"]

REPLICA_CONNECTIONS = 2
"""Pool connections kept for the replica operations (heartbeat, and takeover or intents)."""

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


class ReplicaJournal:
    """What a replica asks of the journal. Errors: ``JournalError`` for database failures."""

    def __init__(self, engine: sa.Engine) -> None:
        self.store = ReplicaStore(engine)
        self.postgres = self.store.postgres
        self._heartbeats = trio.CapacityLimiter(1)
        self._others = trio.CapacityLimiter(REPLICA_CONNECTIONS - 1)

    async def register(self, replica: str, host: str, pid: int) -> float:
        return await self._run(self._heartbeats, self.store.register, replica, host, pid)

    async def heartbeat(self, replica: str) -> bool:
        return await self._run(self._heartbeats, self.store.heartbeat, replica)

    async def adopt(
        self,
        replica: str,
        dead_after: float,
        limit: int,
        *,
        kind: str,
        detail: Callable[[str | None], str],
        everyone_else: bool = False,
        after: tuple[float, str] | None = None,
    ) -> list[Adopted]:
        return await self._run(
            self._others,
            lambda: self.store.adopt(
                replica,
                dead_after,
                limit,
                kind=kind,
                detail=detail,
                everyone_else=everyone_else,
                after=after,
            ),
        )

    async def claim(self, replica: str, job_id: str, dead_after: float) -> JobRecord | None:
        return await self._run(self._others, self.store.claim, replica, job_id, dead_after)

    async def owned(self, replica: str) -> dict[str, int]:
        return await self._run(self._others, self.store.owned, replica)

    async def release(self, replica: str) -> int:
        return await self._run(self._others, self.store.release, replica)

    async def prune(self) -> int:
        return await self._run(self._others, self.store.prune)

    async def request_delete(
        self, job_id: str, now: float, message: str, detail: str
    ) -> JobRecord | None:
        return await self._run(
            self._others, self.store.request_delete, job_id, now, message, detail
        )

    async def listen(
        self, on_notify: Callable[[str], None], on_listening: Callable[[], None]
    ) -> None:
        """Call ``on_notify(payload)`` (in Trio) for each notification until cancelled;
        ``on_listening()`` (in Trio) once listening. PostgreSQL only.

        Errors: ``JournalError`` when the connection fails (the caller listens again).
        """
        token = trio.lowlevel.current_trio_token()
        stop = threading.Event()

        def deliver(payload: str) -> None:
            trio.from_thread.run_sync(on_notify, payload, trio_token=token)

        def listening() -> None:
            trio.from_thread.run_sync(on_listening, trio_token=token)

        try:
            await trio.to_thread.run_sync(
                self.store.listen, deliver, listening, stop, abandon_on_cancel=True
            )
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise JournalError(f"journal notifications failed: {exc}") from exc
        except Exception as exc:  # the driver's own errors (psycopg.OperationalError)
            if type(exc).__module__.startswith("psycopg"):
                raise JournalError(f"journal notifications failed: {exc}") from exc
            raise
        finally:
            stop.set()

    async def _run(
        self, limiter: trio.CapacityLimiter, fn: Callable[[*_Args], _T], *args: *_Args
    ) -> _T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
        except sa.exc.SQLAlchemyError as exc:
            raise JournalError(f"journal replica operation failed: {exc}") from exc
