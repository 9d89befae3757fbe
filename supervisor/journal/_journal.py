"""The journal, Trio side: one writer actor with group commit, reads in worker threads.

Durability rule ("journal first"): ``Journal.write`` returns only after its puts are
committed, so a caller that writes before it acts or answers never acts on, or reports, a
state a crash could lose. SQLite commits with ``synchronous=FULL`` in WAL mode; PostgreSQL
with its own settings (keep ``synchronous_commit`` on).

Group commit: writers do not commit themselves. Each ``write`` sends a request to the
writer actor and waits. The actor takes the first waiting request, drains whatever else is
already queued (up to ``max_batch`` puts), commits them all in one transaction in a worker
thread, and wakes every waiter. While one batch commits, the next one queues up, so the
batch size grows with the load and a commit's cost is shared by everyone in it.
``write_if_absent`` (a conditional insert: the create intent of a new job) rides in the
same batches; a batch applies its puts in the order they were submitted.

A failed commit fails every request of the batch with ``JournalError`` and the actor goes
on. When the cause lies in the data (an ``IntegrityError`` or ``DataError``, e.g. a
violated constraint), the requests of the batch are retried one transaction each first, so
only the faulty request fails.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

import sqlalchemy as sa
import trio

from . import _engine, _migrate
from ._errors import FencedOut, JournalError, JournalLost
from ._owner import Owner, OwnerLock
from ._records import EventRecord, JobQuery, JobRecord, Put
from ._replica_journal import REPLICA_CONNECTIONS, ReplicaJournal
from ._store import IfAbsent, Outcome, Store
from ._writer_thread import WriterThread

__all__ = ["CLOSE_TIMEOUT", "WATCH_INTERVAL", "Journal", "JournalStatistics"]

CLOSE_TIMEOUT = 30.0
"""Seconds ``Journal.open`` waits, on exit, for the puts already submitted to commit."""

WATCH_INTERVAL = 2.0
"""Seconds between two checks that the journal is still the one opened (file, tables)."""

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")
_DATA_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError)

CommitHook = Callable[[int, float], None]
"""Called with (puts, seconds) after each committed transaction; must not raise."""


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    """Counters of the writer actor since the journal was opened."""

    batches_committed: int
    puts_committed: int
    batches_failed: int
    last_batch_size: int  # puts in the last committed batch
    last_commit_seconds: float  # wall time of the last committed transaction
    max_batch_size: int
    pending_puts: int  # submitted, not yet committed or failed
    puts_fenced: int = 0  # refused: their job's row had another owner or epoch


@dataclass(eq=False, slots=True)
class _Request:
    puts: tuple[Put, ...]
    if_absent: bool = False  # one put, applied only if its job has no row (write_if_absent)
    done: bool = False
    waiter: trio.lowlevel.Task | None = None  # parked until done; None once it gave up
    error: JournalError | FencedOut | None = None
    found: JobRecord | None = None  # if_absent: the row that was there instead

    def abandon(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.waiter = None  # cancelled: the writer still commits it, and wakes nobody
        return trio.lowlevel.Abort.SUCCEEDED


@dataclass(slots=True)
class _Counters:
    batches_committed: int = 0
    puts_committed: int = 0
    batches_failed: int = 0
    last_batch_size: int = 0
    last_commit_seconds: float = 0.0
    max_batch_size: int = 0
    pending_puts: int = 0
    puts_fenced: int = 0


class Journal:
    """The supervisor's durable record of every job; open it with ``Journal.open``."""

    def __init__(
        self,
        store: Store,
        send: trio.MemorySendChannel[_Request],
        *,
        max_batch: int,
        on_commit: CommitHook | None = None,
    ) -> None:
        self._store = store
        self._send = send
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._counters = _Counters()
        self._carry: _Request | None = None
        self._writer_done = trio.Event()
        self._writer_thread = WriterThread()
        self._reader_threads = trio.CapacityLimiter(_engine.READ_CONCURRENCY)
        self._lost: str | None = None
        self._lost_event = trio.Event()
        self._replicas: ReplicaJournal | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        upgrade: bool = True,
        max_batch: int = 2000,
        on_commit: CommitHook | None = None,
        standby: Callable[[Owner], None] | None = None,
    ) -> AsyncIterator[Journal]:
        """Open the journal at ``url`` (SQLite file or PostgreSQL), migrating it if ``upgrade``.

        A SQLite journal has one owner process (``OwnerLock``) while it is open: another
        process's journal on the same file makes this raise ``JournalBusy``, or, with
        ``standby``, wait until that process is gone (``standby(owner)`` is called once, as
        the wait starts).

        On exit, every put already submitted is committed (shielded, for at most
        ``CLOSE_TIMEOUT`` seconds plus one commit) before the engine is disposed.

        Errors: ``JournalError`` when the database cannot be reached or migrated, or, with
        ``upgrade=False``, when its schema is not at the head revision. ``ValueError`` for an
        unsupported URL.
        """
        engine = await trio.to_thread.run_sync(
            lambda: _engine.create_engine(
                url, connections=_engine.READ_CONCURRENCY + 1 + REPLICA_CONNECTIONS
            )
        )
        path = _engine.sqlite_path(url)
        lock = OwnerLock(path) if path is not None and path.name != ":memory:" else None
        try:
            if lock is not None and standby is not None:
                await lock.acquire_waiting(standby)
            elif lock is not None:
                lock.acquire()
            await trio.to_thread.run_sync(_prepare_schema, engine, upgrade)
            async with cls.open_store(
                Store(engine), max_batch=max_batch, on_commit=on_commit
            ) as journal:
                yield journal
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(engine.dispose)
            if lock is not None:
                lock.release()

    @classmethod
    @asynccontextmanager
    async def open_store(
        cls, store: Store, *, max_batch: int = 2000, on_commit: CommitHook | None = None
    ) -> AsyncIterator[Journal]:
        """Serve an existing store (whose schema is current); ``open`` is the usual way in.

        ``on_commit(puts, seconds)`` is called after each committed transaction (metrics).

        The caller keeps owning the store's engine, which should allow one connection more
        than ``READ_CONCURRENCY`` (``create_engine`` does), so reads never hold up a commit.
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        # Unbounded: each writer waits for its own commit, so the queue never holds more
        # than one request per writing task; a bounded one parks the writers past its size
        # twice per put (to send, then to wait), which doubled the CPU per put at 10,000.
        send, receive = trio.open_memory_channel[_Request](math.inf)
        async with trio.open_nursery() as nursery:
            journal = cls(store, send, max_batch=max_batch, on_commit=on_commit)
            writer_scope: trio.CancelScope = await nursery.start(journal._run_writer, receive)
            nursery.start_soon(journal._watch)
            try:
                yield journal
            finally:
                await journal._close(writer_scope)
                nursery.cancel_scope.cancel()  # the watch

    async def write(self, *puts: Put) -> None:
        """Commit ``puts``, in order, and return once they are durable.

        Each put replaces its job's row and appends one event, stamped with the record's
        ``updated_at`` and ``phase``. Concurrent writes are committed together; one write is
        never split, even when it holds more than ``max_batch`` puts.

        Errors: ``JournalError`` when the commit failed; none of ``puts`` is then committed.
        ``FencedOut`` when a put's job has another owner or epoch than the put expects
        (``Put.expect``): that put is not written, the others are.
        ``trio.ClosedResourceError`` once the journal is closing.

        Cancellation: if cancelled while waiting, the puts may or may not be committed.
        """
        if puts:
            await self._submit(_Request(puts))

    async def write_if_absent(self, put: Put) -> JobRecord | None:
        """Commit ``put`` only if its job is not in the journal yet; ``None`` if it was committed.

        Otherwise nothing is written, and the result is the job's committed record (an
        earlier put of the same job queued before this one counts). One conditional insert,
        group-committed like ``write``: no separate read needed to find out.

        Errors and cancellation: as ``write``.
        """
        request = _Request((put,), if_absent=True)
        await self._submit(request)
        return request.found

    async def flush(self) -> None:
        """Return once every put submitted before this call has committed or failed."""
        await self._submit(_Request(()))

    @property
    def replicas(self) -> ReplicaJournal:
        """The replica operations (heartbeats, takeover, delete intents) on this journal."""
        if self._replicas is None:
            self._replicas = ReplicaJournal(self._store.engine)
        return self._replicas

    @property
    def lost(self) -> str | None:
        """Why the journal is lost (see ``JournalLost``), or None while it is fine."""
        return self._lost

    async def wait_lost(self) -> str:
        """Wait until the journal is lost; the reason, in one line."""
        await self._lost_event.wait()
        assert self._lost is not None
        return self._lost

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason  # said once, by whoever waits (``serve``: "stopped serving")
            self._lost_event.set()

    def _check_lost(self, exc: BaseException) -> JournalLost | None:
        reason = exc.args[0] if isinstance(exc, JournalLost) else self._store.lost_reason(exc)
        if reason is None:
            return None
        self._mark_lost(reason)
        lost = JournalLost(reason)
        lost.__cause__ = exc
        return lost

    async def _watch(self) -> None:
        """Check every ``WATCH_INTERVAL`` that the journal is still the one opened, so that
        a lost journal is noticed even while nothing is written."""
        while self._lost is None:
            await trio.sleep(WATCH_INTERVAL)
            try:
                await trio.to_thread.run_sync(self._store.probe, limiter=self._reader_threads)
            except JournalLost as exc:
                self._mark_lost(str(exc))
            except sa.exc.SQLAlchemyError:
                pass  # an outage, not a loss: writes report it

    async def _submit(self, request: _Request) -> None:
        """Queue ``request`` for the writer and wait until it is committed or has failed."""
        if self._lost is not None:
            raise JournalLost(self._lost)
        # Per put, this and ``_wake`` are the Trio side of every transition: one schedule
        # point (the park), no Event or ParkingLot; the writer reschedules the task itself.
        await trio.lowlevel.checkpoint_if_cancelled()
        puts = request.puts
        self._counters.pending_puts += len(puts)
        try:
            try:
                self._send.send_nowait(request)
            except trio.WouldBlock:
                await self._send.send(request)
        except trio.BrokenResourceError as exc:
            self._counters.pending_puts -= len(puts)
            raise JournalError("the journal's writer has stopped") from exc
        except BaseException:
            self._counters.pending_puts -= len(puts)
            raise
        if not request.done:
            request.waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(request.abandon)
        if request.error is not None:
            raise request.error

    async def setting(self, name: str, default: str) -> str:
        """The stored value of setting ``name``, storing ``default`` first when there is none.

        Errors: ``JournalError`` when the database fails.
        """
        return await self._read(self._store.setting, name, default)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's latest committed record, or ``None`` if the journal has never seen it."""
        return await self._read(self._store.get, job_id)

    async def find_by_meta(
        self, task_type: str, version: int, resource_meta: bytes
    ) -> JobRecord | None:
        """The job of this task type and version whose connector returned ``resource_meta``.

        The latest updated one if several (adopted twice, say); ``None`` if none.
        """
        return await self._read(self._store.find_by_meta, task_type, version, resource_meta)

    async def unfinished(self) -> list[JobRecord]:
        """Jobs the supervisor still owes work, oldest first: resume these after a restart.

        A job is unfinished while its create is PENDING, or its delete is REQUESTED, or its
        phase is not terminal (SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED); see
        ``is_unfinished``. The rule reads only ``create_state``, ``delete_state`` and
        ``phase``; ``finished_at`` is informative.
        """
        return await self._read(self._store.unfinished)

    async def events(self, job_id: str) -> list[EventRecord]:
        """The job's history, oldest first."""
        return await self._read(self._store.events, job_id)

    async def list_jobs(self, query: JobQuery | None = None) -> list[JobRecord]:
        """Jobs matching every filter of ``query`` (default: the newest 100), newest first."""
        return await self._read(self._store.list_jobs, query or JobQuery())

    def statistics(self) -> JournalStatistics:
        """A snapshot of the writer's counters."""
        c = self._counters
        return JournalStatistics(
            batches_committed=c.batches_committed,
            puts_committed=c.puts_committed,
            batches_failed=c.batches_failed,
            last_batch_size=c.last_batch_size,
            last_commit_seconds=c.last_commit_seconds,
            max_batch_size=c.max_batch_size,
            pending_puts=c.pending_puts,
            puts_fenced=c.puts_fenced,
        )

    async def _read(self, query: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """Run ``query`` in a worker thread; reads never wait for the writer.

        Errors: ``JournalError`` when the database fails.
        Cancellation: takes effect once the query returns.
        """
        if self._lost is not None:
            raise JournalLost(self._lost)
        try:
            return await trio.to_thread.run_sync(query, *args, limiter=self._reader_threads)
        except sa.exc.SQLAlchemyError as exc:
            lost = self._check_lost(exc)
            if lost is not None:
                raise lost from exc
            raise JournalError(f"journal read failed: {exc}") from exc

    async def _run_writer(
        self,
        receive: trio.MemoryReceiveChannel[_Request],
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The writer actor: commit batches until the send side is closed and drained.

        It ignores outside cancellation (``_close`` decides when it stops), so that what was
        submitted is committed even while everything around it is being cancelled.
        """
        with trio.CancelScope(shield=True) as scope:
            task_status.started(scope)
            try:
                while batch := await self._next_batch(receive):
                    await self._commit(batch)
            finally:
                self._writer_thread.stop()
                self._fail_leftovers(receive)
                self._writer_done.set()

    async def _next_batch(self, receive: trio.MemoryReceiveChannel[_Request]) -> list[_Request]:
        """The first waiting request and whatever else is queued, up to ``max_batch`` puts."""
        first, self._carry = self._carry, None
        if first is None:
            try:
                first = await receive.receive()
            except trio.EndOfChannel:
                return []
        batch, size = [first], len(first.puts)
        while size < self._max_batch:
            try:
                request = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if size + len(request.puts) > self._max_batch:
                self._carry = request
                break
            batch.append(request)
            size += len(request.puts)
        return batch

    async def _commit(self, batch: Sequence[_Request]) -> None:
        """Commit ``batch`` in one transaction, then wake its waiters.

        Errors: database errors go to the waiters; anything else also propagates.
        """
        error: JournalError | None = None
        writes: list[Put | IfAbsent] = []
        intents: list[tuple[int, _Request]] = []
        starts: list[int] = []  # where each request's puts begin in ``writes``
        for request in batch:
            starts.append(len(writes))
            if request.if_absent:
                intents.append((len(writes), request))
                writes.append(IfAbsent(request.puts[0]))
            else:
                writes.extend(request.puts)
        try:
            outcome = await self._commit_puts(writes)
            for index, request in intents:
                request.found = outcome.skipped.get(index)
            if outcome.fenced:
                _refuse_fenced(batch, starts, outcome.fenced)
        except _DATA_ERRORS as exc:
            error = _commit_failed(exc)
            if len(batch) > 1:
                error = JournalError("the journal stopped before this write was committed")
                for request in batch:  # isolate the faulty request
                    await self._commit([request])
        except (sa.exc.SQLAlchemyError, JournalLost) as exc:
            error = self._check_lost(exc) or _commit_failed(exc)
        except BaseException as exc:
            error = _commit_failed(exc)
            raise
        finally:
            self._wake(batch, error)

    async def _commit_puts(self, writes: list[Put | IfAbsent]) -> Outcome:
        """One transaction in the writer's thread; counts it. What it did not apply.

        Cancellation: not interruptible once started; the commit finishes first.
        """
        started = time.perf_counter()
        try:
            outcome = await self._writer_thread.run(self._store.commit, writes)
        except BaseException:
            self._counters.batches_failed += 1
            raise
        c = self._counters
        size = len(writes)
        c.batches_committed += 1
        c.puts_committed += size - len(outcome.skipped) - len(outcome.fenced)
        c.puts_fenced += len(outcome.fenced)
        c.last_batch_size = size
        c.last_commit_seconds = time.perf_counter() - started
        c.max_batch_size = max(c.max_batch_size, size)
        if self._on_commit is not None:
            self._on_commit(size, c.last_commit_seconds)
        return outcome

    def _wake(self, batch: Sequence[_Request], error: JournalError | None) -> None:
        """Wake the waiters of ``batch`` not woken yet, failed with ``error`` if there is one."""
        for request in batch:
            if request.done:
                continue
            if request.error is None:
                request.error = error
            request.done = True
            self._counters.pending_puts -= len(request.puts)
            if request.waiter is not None:
                trio.lowlevel.reschedule(request.waiter)

    def _fail_leftovers(self, receive: trio.MemoryReceiveChannel[_Request]) -> None:
        """Fail the requests the writer will never commit (``_close`` stopped it)."""
        leftovers = [self._carry] if self._carry is not None else []
        self._carry = None
        while True:
            try:
                leftovers.append(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        receive.close()
        self._wake(leftovers, JournalError("the journal closed before this write was committed"))

    async def _close(self, writer_scope: trio.CancelScope) -> None:
        """Stop accepting writes, let the writer commit what is queued, then stop it.

        Cancellation: shielded; bounded by ``CLOSE_TIMEOUT`` plus one commit.
        """
        self._send.close()
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await self._writer_done.wait()
        writer_scope.cancel()


def _refuse_fenced(batch: Sequence[_Request], starts: list[int], fenced: frozenset[int]) -> None:
    """Give each request with a fenced-out put its ``FencedOut`` (woken by ``_wake``)."""
    for request, start in zip(batch, starts, strict=True):
        refused = [
            put.record.job_id for offset, put in enumerate(request.puts) if start + offset in fenced
        ]
        if refused:
            request.error = FencedOut(tuple(dict.fromkeys(refused)))


def _commit_failed(cause: BaseException) -> JournalError:
    error = JournalError(f"journal commit failed: {cause!r}")
    error.__cause__ = cause
    return error


def _prepare_schema(engine: sa.Engine, upgrade: bool) -> None:
    """Migrate to head, or check that the schema is already there."""
    if upgrade:
        _migrate.upgrade_engine(engine)
        return
    current, head = _migrate.current_revision_engine(engine), _migrate.head_revision()
    if current != head:
        raise JournalError(
            f"journal schema is at {current or 'nothing'}, expected {head}: "
            "run `python -m supervisor journal upgrade`"
        )
