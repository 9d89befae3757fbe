"""One replica's lease on its jobs: heartbeat, takeover, self-fencing, release.

Every ``serve`` process is a replica with an id of its own (``host-pid-random``). Its
tasks, under the supervisor's nursery:

- **heartbeat**: stamps its row every ``heartbeat_interval`` (the database clock judges);
- **watchdog** (self-fencing): once ``LeaseRules.stop_after`` passes without a committed
  heartbeat (on this process's monotonic clock, which runs ahead of its peers' view), no
  actor may start an external call, before any peer may adopt their jobs. The actors stay,
  holding what they know (a journal outage that every replica sees costs nothing); once a
  heartbeat commits again, the actors whose jobs were taken over meanwhile are stopped
  (their rows have another owner or epoch) before the others carry on. A replica whose row
  is gone (pruned, removed by hand) stops every actor and registers under a new id;
- **takeover**: each heartbeat, adopts unfinished jobs owned by nobody or by dead replicas,
  in batches (again at once while batches come back full), and starts their actors;
- **notifications** (PostgreSQL): ``released <replica>`` wakes the takeover at once;
  ``delete <owner> <job>`` makes the owner restart that job's actor from its row, which
  carries the intent a peer journalled;
- **reconcile**: every ``RECONCILE_INTERVAL``, and whenever listening starts again, the
  actors are made to match the rows this replica owns (a notification missed, a restart
  that failed).

On SQLite there is one owner process (the journal's ``OwnerLock``): it adopts every
unfinished job at start, whoever owned it, and nobody else ever does; its lease cannot
lapse (a slow heartbeat never stops its actors).

``release`` (clean shutdown) gives every job back at once, so peers adopt them without
waiting for the dead-interval; it never touches an external job.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from ..journal import Adopted, JournalError, ReplicaJournal
from ._lease import Lease, LeaseRules

__all__ = ["DEFAULT_ADOPT_BATCH", "RECONCILE_INTERVAL", "Replica", "ReplicaHost"]

_log = logging.getLogger(__name__)

DEFAULT_ADOPT_BATCH = 500
RECONCILE_INTERVAL = 30.0
"""Seconds between two checks that the actors match the rows this replica owns."""
_PRUNE_EVERY = 300  # heartbeats between two prunes of long-dead replicas' rows
_RETRY = 1.0  # seconds between two tries to register again, or to listen again


class ReplicaHost(Protocol):
    """What a replica needs of the supervisor that runs its jobs."""

    def take(self, adopted: Sequence[Adopted]) -> None:
        """Start an actor for each job adopted."""

    async def stop_actors(self) -> None:
        """Stop every actor (never touching external jobs) and wait until they have ended."""

    async def keep_only(self, owned: dict[str, int]) -> int:
        """Stop the actors whose job is not in ``owned`` (job -> epoch) with its epoch; how
        many were stopped."""

    async def refresh(self, job_id: str) -> None:
        """Restart the job's actor from its journal row if the row changed under it."""

    def epochs(self) -> dict[str, int]:
        """The epoch of each live actor's record."""


def _always() -> bool:
    return True


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Replica:
    """This process's membership of the journal's replicas (see the module docstring)."""

    def __init__(
        self,
        journal: ReplicaJournal,
        rules: LeaseRules | None = None,
        *,
        adopt_batch: int = DEFAULT_ADOPT_BATCH,
        exclusive: bool | None = None,
    ) -> None:
        """``exclusive``: this process is the journal's only one (default: SQLite)."""
        if adopt_batch < 1:
            raise ValueError("the adopt batch must be at least 1")
        self.journal = journal
        self.rules = rules or LeaseRules()
        self.adopt_batch = adopt_batch
        self.exclusive = (not journal.postgres) if exclusive is None else exclusive
        self.id = new_replica_id()
        self.suspended = False  # self-fenced: the lease lapsed, not yet confirmed again
        self._resumed = trio.Event()
        self._resumed.set()
        self.lease = Lease(self.rules, trio.current_time())
        self.takeovers = 0  # jobs adopted from others (or from before a restart)
        self.self_fenced = 0
        self.adopted_at_start = 0
        self._host: ReplicaHost | None = None
        self._nursery: trio.Nursery | None = None  # for refreshes of notified jobs
        self._wake_takeover = trio.Event()
        self._beats = 0
        self._confirmed_monotonic = time.monotonic()

    # -- start -----------------------------------------------------------------------------

    async def run(
        self, host: ReplicaHost, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Register, adopt what is orphaned (every unfinished job, on SQLite), then signal
        started and keep the lease until cancelled.

        Errors: ``JournalError`` when the journal cannot be reached at start.
        """
        self._host = host
        await self._register()
        self.adopted_at_start = await self._take_over()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._heartbeats)
            if not self.exclusive:
                nursery.start_soon(self._watchdog)
            nursery.start_soon(self._takeovers)
            if self.journal.postgres:
                nursery.start_soon(self._notifications)
            task_status.started()

    @property
    def may_act(self) -> Callable[[], bool]:
        """False while the lease may have lapsed: no external call may start then."""

        if self.exclusive:  # nobody else may take a job over: the lease cannot lapse
            return _always

        def may_act() -> bool:
            return not self.suspended and not self.lease.must_stop(trio.current_time())

        return may_act

    async def wait_to_act(self) -> None:
        """For an actor whose ``may_act`` said no: wait until the lease is confirmed again
        (the actor is stopped meanwhile if its job was taken over)."""
        while not self.may_act():
            if not self.suspended:
                self._suspend(self._lapse_reason())
            await self._resumed.wait()

    def heartbeat_age_now(self) -> float:
        """Seconds since the start of the last heartbeat known to have committed; from any
        thread (a scrape): on the OS's monotonic clock."""
        return max(0.0, time.monotonic() - self._confirmed_monotonic)

    async def _register(self) -> None:
        started = trio.current_time()
        await self.journal.register(self.id, socket.gethostname(), os.getpid())
        self.lease = Lease(self.rules, started)
        _log.info("replica %s registered", self.id)

    # -- heartbeat and self-fencing -----------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep_until(self.lease.next_beat(trio.current_time()))
            started = trio.current_time()
            try:
                alive = await self.journal.heartbeat(self.id)
                if not alive:
                    await self._rejoin()
                    continue
                if self.suspended or (
                    not self.exclusive and self.lease.must_stop(trio.current_time())
                ):
                    await self._recover()
            except JournalError as exc:
                _log.warning("replica %s: heartbeat failed: %s", self.id, exc)
                await trio.sleep(min(self.rules.heartbeat_interval, 1.0) / 2)
                continue
            self.lease.renewed(started)
            self._confirmed_monotonic = time.monotonic() - (trio.current_time() - started)
            if self.suspended:
                self._resume()
            self._beats += 1
            self._wake_takeover.set()

    async def _watchdog(self) -> None:
        while True:
            await trio.sleep_until(self.lease.stop_at())
            if self.lease.must_stop(trio.current_time()):
                if not self.suspended:
                    self._suspend(self._lapse_reason())
                await self._resumed.wait()

    def _lapse_reason(self) -> str:
        return (
            f"no heartbeat committed for {self.rules.stop_after:g} s"
            f" (peers call it dead after {self.rules.dead_after:g} s)"
        )

    def _suspend(self, why: str) -> None:
        """Self-fencing: no external call starts until the lease is confirmed again, and
        then only for the jobs still this replica's (``_recover``)."""
        self.suspended = True
        self.self_fenced += 1
        self._resumed = trio.Event()
        _log.error("replica %s fenced itself: %s; its actors make no external call", self.id, why)

    def _resume(self) -> None:
        self.suspended = False
        self._resumed.set()
        _log.warning("replica %s: lease confirmed again; its actors carry on", self.id)

    async def _recover(self) -> None:
        """After a lapse, before any actor acts again: stop the actors whose jobs were
        taken over meanwhile (their rows have another owner or epoch)."""
        assert self._host is not None
        owned = await self.journal.owned(self.id)
        stopped = await self._host.keep_only(owned)
        if stopped:
            _log.warning(
                "replica %s: %d of its jobs were taken over while its lease lapsed;"
                " their actors stopped",
                self.id,
                stopped,
            )

    async def _rejoin(self) -> None:
        """This replica's row is gone (pruned, or removed by hand): its jobs are anybody's.
        Stop every actor, then register again under a new id."""
        assert self._host is not None
        _log.error("replica %s: its row is gone from the journal; stopping its actors", self.id)
        if not self.suspended:
            self._suspend("its replica row is gone")
        await self._host.stop_actors()
        self.id = new_replica_id()
        await self._register()
        self._resume()

    # -- takeover ----------------------------------------------------------------------------

    async def _takeovers(self) -> None:
        while True:
            await self._wake_takeover.wait()
            self._wake_takeover = trio.Event()
            if self.suspended:
                continue
            try:
                await self._take_over()
                if self._beats % _PRUNE_EVERY == 1:
                    await self.journal.prune()
            except JournalError as exc:
                _log.warning("replica %s: takeover failed: %s", self.id, exc)

    async def _take_over(self) -> int:
        """Adopt orphaned jobs in batches until none is left (or this replica is fenced)."""
        total = 0
        sources: set[str] = set()
        kind = "resumed" if self.exclusive else "taken_over"
        # Each batch starts after the last one's last job (oldest first): a job skipped
        # meanwhile (locked by a peer's takeover) is the next takeover's.
        after: tuple[float, str] | None = None
        while not self.suspended:
            batch = await self.journal.adopt(
                self.id,
                self.rules.dead_after,
                self.adopt_batch,
                kind=kind,
                detail=self._detail,
                everyone_else=self.exclusive,
                after=after,
            )
            if not batch:
                break
            last = batch[-1].record
            after = (last.created_at, last.job_id)
            assert self._host is not None
            self._host.take(batch)
            total += len(batch)
            self.takeovers += len(batch)
            sources.update(a.previous or "nobody" for a in batch)
            if len(batch) < self.adopt_batch:
                break
            await trio.lowlevel.checkpoint()  # let peers' batches and this replica's actors in
        if total and not self.exclusive:
            _log.info(
                "replica %s took over %d job(s) from %s", self.id, total, ", ".join(sorted(sources))
            )
        return total

    def _detail(self, previous: str | None) -> str:
        return json.dumps({"replica": self.id, "from": previous})

    # -- notifications -----------------------------------------------------------------------

    async def _notifications(self) -> None:
        """Listen on the journal's channel; again after every failure, then reconcile."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reconcile_periodically)
            while True:
                try:
                    await self._listen_once(nursery)
                except JournalError as exc:
                    _log.warning("replica %s: notifications stopped: %s", self.id, exc)
                await trio.sleep(_RETRY)

    async def _listen_once(self, nursery: trio.Nursery) -> None:
        await self.journal.listen(
            self._notified,
            lambda: nursery.start_soon(self._reconcile),  # what was said while nobody listened
        )

    def _notified(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        if kind == "released":
            self._wake_takeover.set()
        elif kind == "delete":
            owner, _, job_id = rest.partition(" ")
            if owner == self.id and self._host is not None and self._nursery and job_id:
                self._nursery.start_soon(self._refresh, job_id)

    async def _reconcile_periodically(self) -> None:
        while True:
            await trio.sleep(RECONCILE_INTERVAL)
            await self._reconcile()

    async def _reconcile(self) -> None:
        """Make the actors match the rows this replica owns: restart those whose row
        changed under them (a peer's delete intent whose notification was missed) and start
        those missing (a restart that failed)."""
        if self.suspended or self._host is None:
            return
        try:
            owned = await self.journal.owned(self.id)
        except JournalError as exc:
            _log.warning("replica %s: cannot read its jobs: %s", self.id, exc)
            return
        live = self._host.epochs()
        for job_id, epoch in owned.items():
            if live.get(job_id) != epoch:
                await self._refresh(job_id)

    async def _refresh(self, job_id: str) -> None:
        assert self._host is not None
        try:
            await self._host.refresh(job_id)
        except JournalError as exc:  # the next reconcile tries again
            _log.warning("replica %s: job %s not refreshed: %s", self.id, job_id, exc)

    # -- release -----------------------------------------------------------------------------

    async def release(self) -> None:
        """Give every job back (shielded, bounded): peers adopt them at once."""
        with trio.move_on_after(10, shield=True):
            try:
                count = await self.journal.release(self.id)
            except JournalError as exc:
                _log.warning(
                    "replica %s: could not release its jobs (%s): peers adopt them once it"
                    " is dead, after %g s",
                    self.id,
                    exc,
                    self.rules.dead_after,
                )
                return
            _log.info("replica %s released %d job(s)", self.id, count)
