"""The supervisor: the ConnectorService that runs every job as an actor with a journal.

CreateTask finds or starts the job's actor (by the identity derived from the task
execution id) and answers once the create has settled; GetTask answers from the actor's
published state, or from the journal for a finished job, and never calls the external
service; DeleteTask goes through the actor, which journals the intent before answering.
A ``resource_meta`` we have never seen is adopted only if its MAC verifies (``MetaSeal``:
the metas we hand out are sealed; a known job is found by its journalled bytes, sealed or
from before sealing). On start, every unfinished job in the journal gets its actor back.

Lookups of one job are serialised by a per-job lock, so two concurrent CreateTasks (or
adoptions) of the same job start one actor; an adoption is one conditional insert, like a
create, so a job is adopted once however its lookups race.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, runtime_checkable

import trio

from connectors import AsyncConnector, ConnectorRegistry, Phase, ResourceMeta
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import Connection, TaskTemplate

from .._errors import ConnectorFailed, InvalidArgument, NotFound, Unavailable
from ..actor import (
    NO_KWARGS,
    Cancel,
    Credentials,
    Inbox,
    JobContext,
    JobHandle,
    JournalFaults,
    actor_ended,
    answer_for,
    first_step,
    journal_unavailable,
)
from ..journal import (
    Adopted,
    CreateState,
    DeleteState,
    FencedOut,
    JobRecord,
    JournalError,
    JournalLike,
    Put,
    is_settled,
    is_unfinished,
)
from ..observe import Metrics, ReplicaStatistics, bind_job, job_fields
from ..wire import (
    MetaSeal,
    adopted_job_id,
    connection_kwargs,
    connector_for_category,
    connector_for_type,
    decode_meta,
    job_id_for,
    native_inputs,
    payload_of,
    require_connection,
    retry_attempt,
)
from ._lifecycle import journal_resumed, lifecycle_detail
from ._replica import Replica
from ._stateless import StatelessAnswers
from ._superseded import earlier_attempts, superseded_reason

__all__ = ["Supervisor"]

_log = logging.getLogger(__name__)

#: A GetTask that adopts a job waits this long for the job's first poll.
ADOPTION_FIRST_POLL_WAIT = 5.0
#: After an actor dies of an unexpected error, wait this long before restarting it.
ACTOR_RESTART_DELAY = 5.0
#: The journal setting that holds the generated resource_meta key (when none is configured).
META_KEY_SETTING = "resource_meta_key"
#: A CreateTask of a job another replica is creating waits this long for it, then UNAVAILABLE.
PEER_CREATE_WAIT = 30.0
_PEER_CREATE_POLL = (0.05, 1.0)  # first and longest pause between two reads of its row
#: The Trio name of every actor task (their log lines name the job: ``bind_job``).
_ACTOR_TASK = "supervisor.actor"

_MetaKey = tuple[str, int, bytes]
Kwargs = Mapping[str, str]
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _journal_faults_unavailable(
    method: Callable[Concatenate[Supervisor, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[Supervisor, _P], Coroutine[Any, Any, _R]]:
    """An RPC that meets a journal fault answers UNAVAILABLE (retryable), not INTERNAL."""

    async def rpc(self: Supervisor, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except JournalError as exc:
            self._faults.failed(exc)
            raise Unavailable(journal_unavailable(exc)) from exc

    return rpc


class Supervisor(StatelessAnswers):
    """Runs jobs as actors; answers the connector RPCs. Use ``async with sup.running():``."""

    def __init__(
        self,
        registry: ConnectorRegistry,
        journal: JournalLike,
        *,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        meta_key: bytes | None = None,
        adopt_unsigned: bool = False,
        replica: Replica | None = None,
    ) -> None:
        """``meta_key`` MACs the resource_metas we hand out (shared by replicas); without one,
        a key generated into the journal is used. ``adopt_unsigned`` adopts metas without a
        MAC (a migration window); see ``MetaSeal``. ``replica``: this process's lease on
        the journal's jobs (``serve`` always has one); without it, the supervisor runs
        every unfinished job of the journal and records no owner (tests, embedding)."""
        super().__init__(registry)
        self._meta_key = meta_key
        self._adopt_unsigned = adopt_unsigned
        self._seal: MetaSeal | None = None
        self._journal = journal
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._metrics = metrics or Metrics()
        self._jobs: dict[str, JobHandle] = {}
        self._by_meta: dict[_MetaKey, JobHandle] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._contexts: dict[int, JobContext] = {}
        self._seen: set[str] = set()  # live jobs a GetTask has named (_superseded)
        self._nursery: trio.Nursery | None = None  # the actors'
        self._outer: trio.Nursery | None = None
        self._actors_scope: trio.CancelScope | None = None
        self._actors_done = trio.Event()
        self._replica = replica
        self._faults = JournalFaults(self._metrics.journal_errors, self._metrics.journal_waiting)
        self.resumed = 0
        self.fenced = 0  # actors stopped because another replica took their job

    # -- running ---------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Supervisor]:
        """Start the actors' nursery and resume unfinished jobs (with a replica: take over
        those nobody alive owns); on exit stop the actors, then release the replica's jobs.

        Stopping an actor never touches its external job: the journal holds everything
        needed to carry on after a restart, here or on a peer.
        """
        replica = self._replica
        async with trio.open_nursery() as nursery:
            self._outer = nursery
            lease = trio.CancelScope()
            try:
                await self._open_seal()
                await nursery.start(self._host_actors)
                if replica is None:
                    await self.resume()
                else:
                    await nursery.start(self._keep_lease, lease, replica)
                    self.resumed = replica.adopted_at_start
                    if self.resumed:
                        _log.info("resumed %d unfinished job(s)", self.resumed)
                yield self
            finally:
                lease.cancel()
                with trio.CancelScope(shield=True):
                    await self._stop_actors()
                    if replica is not None:
                        await self._release(replica)
                self._outer = None
                nursery.cancel_scope.cancel()

    async def _keep_lease(
        self, scope: trio.CancelScope, replica: Replica, *, task_status: trio.TaskStatus[None]
    ) -> None:
        with scope:
            await replica.run(self, task_status=task_status)

    async def _host_actors(self, *, task_status: trio.TaskStatus[None]) -> None:
        """The actors' nursery, until ``_stop_actors`` cancels it (a self-fence, the end)."""
        done = self._actors_done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._actors_scope = scope
                async with trio.open_nursery() as actors:
                    self._nursery = actors
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._nursery = None
            done.set()

    async def _stop_actors(self) -> None:
        if self._actors_scope is not None:
            self._actors_scope.cancel()
            self._actors_scope = None
        await self._actors_done.wait()

    async def _release(self, replica: Replica) -> None:
        """Commit what the stopped actors submitted, then give their jobs back."""
        if isinstance(self._journal, _Flushable):
            with trio.move_on_after(10):
                # Release anyway if it fails: what did not commit is redone by the next owner.
                with contextlib.suppress(JournalError, trio.ClosedResourceError):
                    await self._journal.flush()
        await replica.release()

    # -- the replica's host (``ReplicaHost``) ------------------------------------------------

    def take(self, adopted: Sequence[Adopted]) -> None:
        """Start the actors of jobs this replica just took over (their rows are ours now)."""
        for item in adopted:
            record = item.record
            connector = self._connector_of(record)
            if connector is None:
                continue
            old = self._jobs.get(record.job_id)
            if old is not None:  # an actor of an earlier epoch: replace it
                assert self._outer is not None
                self._outer.start_soon(self._replace, connector, old, record)
                continue
            self._start(connector, record, kwargs=None, resumed=True)

    async def _replace(
        self, connector: AsyncConnector[Any], old: JobHandle, record: JobRecord
    ) -> None:
        async with self._job_lock(record.job_id):
            kwargs = old.last_kwargs
            await self._stop_one(old)
            if self._jobs.get(record.job_id) is None:
                self._start(connector, record, kwargs=kwargs, resumed=True)

    async def stop_actors(self) -> None:
        """Stop every actor (a self-fence) and open a new nursery for the next ones."""
        await self._stop_actors()
        assert self._outer is not None
        await self._outer.start(self._host_actors)

    async def refresh(self, job_id: str, kwargs: Mapping[str, str] | None = None) -> None:
        """Restart the job's actor from its row if the row changed under it (a peer's delete
        intent); stop it if the job is no longer this replica's."""
        replica = self._replica
        async with self._job_lock(job_id):
            row = await self._journal.get(job_id)
            handle = self._jobs.get(job_id)
            if handle is not None:
                if row is not None and _fence(handle.record) == _fence(row):
                    return
                kwargs = handle.last_kwargs
                await self._stop_one(handle)
            if row is None or replica is None or not replica.may_act():
                return
            if row.owner != replica.id or not is_unfinished(row):
                return
            connector = self._connector_of(row)
            if connector is not None and self._jobs.get(job_id) is None:
                self._start(connector, row, kwargs=kwargs, resumed=True)

    async def keep_only(self, owned: dict[str, int]) -> int:
        """Stop the actors whose job is not in ``owned`` with its epoch (after a lapsed
        lease: those jobs were taken over). How many were stopped."""
        stale = [
            handle
            for job_id, handle in list(self._jobs.items())
            if owned.get(job_id) != handle.record.epoch
        ]
        for handle in stale:
            await self._stop_one(handle)
        return len(stale)

    async def _refresh_soon(self, handle: JobHandle) -> None:
        """``refresh`` after a fenced-out write, waiting out journal faults."""
        for pause in (0.5, 1, 2, 4, 8, 16, 30):
            try:
                await self.refresh(handle.job_id, handle.last_kwargs)
                return
            except JournalError as exc:
                _log.warning("job %s: cannot read its row yet: %s", handle.job_id, exc)
                await trio.sleep(pause)  # then the replica's reconcile takes over

    def epochs(self) -> dict[str, int]:
        return {job_id: handle.record.epoch for job_id, handle in self._jobs.items()}

    async def _stop_one(self, handle: JobHandle) -> None:
        scope = handle.run_scope
        if scope is not None:
            scope.cancel()
            await handle.ended.wait()

    def _owner(self) -> str | None:
        return self._replica.id if self._replica is not None else None

    def _require_lease(self) -> None:
        if self._replica is not None and not self._replica.may_act():
            raise Unavailable("this replica lost its lease on the journal for now; retry")

    def _connector_of(self, record: JobRecord) -> AsyncConnector[Any] | None:
        try:
            return connector_for_type(self.registry, record.task_type, record.task_type_version)
        except NotFound:
            _log.error(
                "job %s: no connector for %s v%d: left in the journal, not resumed",
                record.job_id,
                record.task_type,
                record.task_type_version,
                extra=job_fields(record.job_id, record.connector),
            )
            return None

    async def _open_seal(self) -> None:
        key = self._meta_key
        if key is None:
            key = (await self._journal.setting(META_KEY_SETTING, secrets.token_hex(32))).encode()
        self._seal = MetaSeal(key, adopt_unsigned=self._adopt_unsigned)

    def _open(self, key: _MetaKey) -> bytes:
        """The connector's bytes of a meta we do not know. Errors: InvalidArgument."""
        if self._seal is None:
            raise Unavailable("the supervisor is not running")
        return self._seal.open(*key)

    async def resume(self) -> int:
        """Start an actor for every unfinished job in the journal. Returns how many.

        Each gets a ``resumed`` event first (``_lifecycle``), written in batches.
        """
        found: list[tuple[AsyncConnector[Any], JobRecord]] = []
        for record in await self._journal.unfinished():
            if record.job_id in self._jobs:
                continue
            connector = self._connector_of(record)
            if connector is not None:
                found.append((connector, record))
        stamped = await journal_resumed(
            self._journal, [record for _, record in found], self._wall_clock()
        )
        for (connector, _), record in zip(found, stamped, strict=True):
            if record.job_id not in self._jobs:
                self._start(connector, record, kwargs=None, resumed=True)
        count = len(found)
        self.resumed = count
        if count:
            _log.info("resumed %d unfinished job(s)", count)
        return count

    def _context(self, connector: AsyncConnector[Any]) -> JobContext:
        ctx = self._contexts.get(id(connector))
        if ctx is None:
            assert self._seal is not None  # set by running() before any actor starts
            lease: dict[str, Any] = {}
            if self._replica is not None:  # else JobContext's: always allowed to act
                lease = {"may_act": self._replica.may_act, "wait_to_act": self._replica.wait_to_act}
            ctx = JobContext(
                connector=connector,
                journal=self._journal,
                limiter=trio.CapacityLimiter(connector.max_concurrent_calls),
                wall_clock=self._wall_clock,
                rng=self._rng,
                metrics=self._metrics.connector(connector.name),
                faults=self._faults,
                seal=self._seal.seal,
                **lease,
            )
            self._contexts[id(connector)] = ctx
        if self._nursery is not None:
            ctx.timers.start(self._nursery)  # the connector's one timer, for all its actors
        return ctx

    def _start(
        self,
        connector: AsyncConnector[Any],
        record: JobRecord,
        *,
        kwargs: Mapping[str, str] | None,
        resumed: bool,
        request: pb.CreateTaskRequest | None = None,
        new_intent: bool = False,
    ) -> JobHandle:
        if self._nursery is None:
            raise Unavailable("the supervisor is not running")
        handle = JobHandle(record)
        handle.last_kwargs = kwargs or None
        self._jobs[record.job_id] = handle
        if record.resource_meta is not None:
            self._by_meta[_meta_key(record)] = handle
        self._nursery.start_soon(
            self._supervise,
            connector,
            handle,
            kwargs,
            resumed,
            request,
            new_intent,
            name=_ACTOR_TASK,  # one shared name: Trio would format a new string per task
        )
        return handle

    def _start_claimed(
        self, connector: AsyncConnector[Any], record: JobRecord, kwargs: Mapping[str, str]
    ) -> JobHandle:
        """Start the actor of a job just claimed (``_claim``), unless a takeover started one
        while the claim was in flight: ``take`` runs without the job's lock, so the check
        made before the claim is stale. One actor per job, never two."""
        running = self._jobs.get(record.job_id)
        if running is not None:
            self._offer_credentials(running, kwargs)
            return running
        return self._start(connector, record, kwargs=kwargs or None, resumed=True)

    async def _supervise(
        self,
        connector: AsyncConnector[Any],
        handle: JobHandle,
        kwargs: Mapping[str, str] | None,
        resumed: bool,
        request: pb.CreateTaskRequest | None,
        new_intent: bool,
    ) -> None:
        """Run an actor; restart it (from its journalled state) if it dies of a bug."""
        ctx = self._context(connector)
        bind_job(handle.job_id, connector.name)  # every log line of this task names the job
        if kwargs is not None and not kwargs:
            kwargs = NO_KWARGS  # this frame lives as long as the job: no empty dict of its own
        try:
            with trio.CancelScope() as handle.run_scope:
                while True:
                    try:
                        # The actor's steps run in this frame: one coroutine frame less per
                        # live job. The actor has the request now: this frame lives as long
                        # as the job and must not keep it.
                        step = first_step(
                            handle,
                            ctx,
                            kwargs=kwargs,
                            resumed=resumed,
                            request=request,
                            new_intent=new_intent,
                        )
                        request = None
                        try:
                            while step is not None:
                                step = await step()
                        finally:
                            actor_ended(handle)
                        return
                    except FencedOut:
                        # The row changed under the actor: another replica owns the job now
                        # (stop, never touching the external job), or a peer journalled an
                        # intent for it (restart from the row: ``refresh``).
                        self.fenced += 1
                        _log.warning("job %s: fenced out; actor stopped", handle.job_id)
                        if self._replica is not None and self._outer is not None:
                            self._outer.start_soon(self._refresh_soon, handle)
                        return
                    except Exception:
                        _log.exception("job %s: actor failed; restarting it", handle.job_id)
                        handle.inbox = Inbox()
                        resumed, request, new_intent = True, None, False
                        await trio.sleep(ACTOR_RESTART_DELAY)
        finally:
            handle.run_scope = None
            self._forget(handle)
            handle.ended.set()

    def _forget(self, handle: JobHandle) -> None:
        if self._jobs.get(handle.job_id) is handle:
            del self._jobs[handle.job_id]
            self._seen.discard(handle.job_id)
        if handle.record.resource_meta is not None:
            key = _meta_key(handle.record)
            if self._by_meta.get(key) is handle:
                del self._by_meta[key]

    @asynccontextmanager
    async def _job_lock(self, job_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(job_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(job_id, None)

    def live_records(self) -> list[JobRecord]:
        """The records of the jobs with a live actor: a snapshot, safe from another thread."""
        return [handle.record for handle in tuple(self._jobs.values())]

    def statistics(self) -> dict[str, int]:
        stats = {"live_jobs": len(self._jobs), "resumed": self.resumed, "fenced": self.fenced}
        if self._replica is not None:
            stats["takeovers"] = self._replica.takeovers
            stats["self_fenced"] = self._replica.self_fenced
        return stats

    def replica_statistics(self) -> ReplicaStatistics | None:
        """The replica's counters (None without one); safe from another thread."""
        replica = self._replica
        if replica is None:
            return None
        return ReplicaStatistics(
            owned=len(self._jobs),
            takeovers=replica.takeovers,
            self_fenced=replica.self_fenced,
            heartbeat_age=replica.heartbeat_age_now(),
        )

    @property
    def replica(self) -> Replica | None:
        return self._replica

    def journal_fault(self) -> str | None:
        """Why the journal fails while actors wait to write their results; None when none
        does (health is NOT_SERVING meanwhile)."""
        if self._replica is not None and not self._replica.may_act():
            return "this replica lost its lease on the journal"
        return self._faults.fault()

    # -- CreateTask ------------------------------------------------------------------------

    @_journal_faults_unavailable
    async def create_task(
        self, request: pb.CreateTaskRequest, *, received: bytes | None = None
    ) -> pb.CreateTaskResponse:
        """``received``: ``request`` as it came on the wire, journalled as is when it carries
        no connection (nothing secret to blank)."""
        template = request.template
        if template is None or not template.type:
            raise InvalidArgument("template with a task type is required")
        connector = connector_for_type(self.registry, template.type, template.task_type_version)
        native_inputs(request.inputs)  # bad inputs are the caller's error: refuse them now
        metadata = request.task_execution_metadata
        job_id = job_id_for(template.type, template.task_type_version, metadata)
        kwargs = connection_kwargs(request.connection)
        require_connection(connector, kwargs)
        self._require_lease()
        async with self._job_lock(job_id):
            handle = self._jobs.get(job_id)
            if handle is not None and handle.record.create_state == CreateState.FAILED:
                handle = None  # its actor is ending; this request tries the create again
            if handle is not None:
                self._offer_credentials(handle, kwargs)
            else:
                # One conditional insert, group-committed: a new job costs no read.
                record = self._new_record(connector, job_id, request, received)
                intent = Put(record, "create_intent", json.dumps({"attempt": record.attempt}))
                existing = await self._journal.write_if_absent(intent)
                if existing is None:
                    handle = self._start(
                        connector, record, kwargs=kwargs, resumed=False, request=request
                    )
                    self._supersede_earlier_attempts(template, metadata, kwargs)
                elif existing.create_state == CreateState.CREATED:
                    assert existing.resource_meta is not None
                    return pb.CreateTaskResponse(resource_meta=existing.resource_meta)
                elif existing.create_state == CreateState.ABANDONED:
                    raise ConnectorFailed(existing.message)
                elif existing.create_state == CreateState.PENDING:
                    mine = await self._claim(existing)
                    if mine is None:  # a live peer is creating it
                        return await self._peer_create(job_id)
                    handle = self._start_claimed(connector, mine, kwargs)
                else:  # FAILED: this request tries the create again, as the job's owner now
                    record = dataclasses.replace(
                        record, epoch=existing.epoch + (record.owner != existing.owner)
                    )
                    retry = Put(record, intent.kind, intent.detail, expect=_fence(existing))
                    try:
                        await self._journal.write(retry)
                    except FencedOut as exc:
                        raise Unavailable(
                            "the job changed while its create was retried; retry"
                        ) from exc
                    handle = self._start(
                        connector, record, kwargs=kwargs, resumed=False, request=request
                    )
        await handle.created.wait()
        if handle.create_error is not None:
            raise handle.create_error
        meta = handle.record.resource_meta
        if meta is None:
            raise Unavailable("the job's create did not finish; retry")
        self._by_meta.setdefault(_meta_key(handle.record), handle)
        return pb.CreateTaskResponse(resource_meta=meta)

    def _supersede_earlier_attempts(
        self, template: TaskTemplate, metadata: TaskExecutionMetadata | None, kwargs: Kwargs
    ) -> None:
        """Cancel the live, never-seen jobs of this task execution's earlier attempts
        (``_superseded``): through their actors, once (a journalled intent is not repeated)."""
        attempt = retry_attempt(metadata)
        for _, job_id in earlier_attempts(template.type, template.task_type_version, metadata):
            earlier = self._jobs.get(job_id)
            if earlier is None or job_id in self._seen or is_settled(earlier.record):
                continue
            if earlier.record.delete_state == DeleteState.REQUESTED:
                continue
            _log.info(
                "job %s: superseded by attempt %d of its task execution: cancelling it",
                job_id,
                attempt,
                extra=job_fields(job_id, earlier.record.connector),
            )
            try:
                earlier.inbox.put(Cancel(kwargs, reason=superseded_reason(attempt)))
            except trio.ClosedResourceError:
                continue  # its actor has ended: nothing runs on

    async def _claim(self, record: JobRecord) -> JobRecord | None:
        """The row of a journalled job without a live actor here, made this replica's if
        nobody alive owns it: None while a live peer does."""
        replica = self._replica
        if replica is None:
            return record
        if record.owner == replica.id:
            return record
        return await replica.journal.claim(replica.id, record.job_id, replica.rules.dead_after)

    async def _peer_create(self, job_id: str) -> pb.CreateTaskResponse:
        """Wait for the create a peer replica is making (reading its row), and answer as it
        would. Errors: Unavailable after ``PEER_CREATE_WAIT``; ConnectorFailed."""
        pause, longest = _PEER_CREATE_POLL
        with trio.move_on_after(PEER_CREATE_WAIT):
            while True:
                await trio.sleep(pause)
                pause = min(pause * 2, longest)
                row = await self._journal.get(job_id)
                if row is None or row.create_state == CreateState.PENDING:
                    continue
                if row.create_state == CreateState.CREATED and row.resource_meta is not None:
                    return pb.CreateTaskResponse(resource_meta=row.resource_meta)
                raise ConnectorFailed(row.message)
        raise Unavailable("another replica is still creating this job; retry")

    def _new_record(
        self,
        connector: AsyncConnector[Any],
        job_id: str,
        request: pb.CreateTaskRequest,
        received: bytes | None,
    ) -> JobRecord:
        template = request.template
        assert template is not None
        now = self._wall_clock()
        timeout = template.metadata.timeout if template.metadata is not None else None
        return JobRecord(
            job_id=job_id,
            task_type=template.type,
            task_type_version=template.task_type_version,
            connector=connector.name,
            attempt=retry_attempt(request.task_execution_metadata),
            create_state=CreateState.PENDING,
            delete_state=DeleteState.NONE,
            phase=int(Phase.QUEUED),
            created_at=now,
            updated_at=now,
            message="creating the external job",
            create_request=_as_journalled(request, received),
            deadline=now + timeout.total_seconds() if timeout else None,
            owner=self._owner(),
        )

    # -- GetTask ---------------------------------------------------------------------------

    @_journal_faults_unavailable
    async def get_task(self, request: pb.GetTaskRequest) -> pb.GetTaskResponse:
        category = request.task_category
        connector = connector_for_category(self.registry, category)
        assert category is not None
        key = (category.name, category.version, request.resource_meta)
        handle = self._by_meta.get(key)
        if handle is None:
            found = await self._find(connector, key)
            if isinstance(found, JobRecord):
                return answer_for(found)
            if found is None:
                found = await self._adopt(connector, key, request.connection, delete=False)
                if isinstance(found, JobRecord):
                    return answer_for(found)
                with trio.move_on_after(ADOPTION_FIRST_POLL_WAIT):
                    await found.polled.wait()
            handle = found
        self._seen.add(handle.job_id)
        self._offer_credentials(handle, connection_kwargs(request.connection))
        return answer_for(handle.record)

    def answer_now(
        self, task_type: str, version: int, resource_meta: bytes, credentials: Mapping[str, str]
    ) -> bytes | None:
        """GetTask of a live job without a Trio task: its encoded answer, or None (unknown
        here: ``get_task`` looks in the journal or adopts).

        Hot path: Propeller polls every job every few seconds. Crossing to Trio costs a Trio
        task per call; this is a dict lookup and, rarely, a ``send_nowait``, both safe on the
        asyncio side of the bridge (same thread).
        """
        handle = self._by_meta.get((task_type, version, resource_meta))
        if handle is None:
            return None
        self._seen.add(handle.job_id)
        self._offer_credentials(handle, credentials)
        return handle.answer

    async def _find(
        self, connector: AsyncConnector[Any], key: _MetaKey
    ) -> JobHandle | JobRecord | None:
        """The live actor or the journal record for ``key``; None if we never saw it.

        Errors: InvalidArgument when an unknown resource_meta does not decode.
        """
        record = await self._journal.find_by_meta(*key)
        if record is None:
            decode_meta(connector, self._open(key))  # a meta we never saw: its MAC must verify
            return None
        handle = self._jobs.get(record.job_id)
        if handle is None:
            return record
        self._by_meta[key] = handle
        return handle

    async def _adopt(
        self,
        connector: AsyncConnector[Any],
        key: _MetaKey,
        connection: Connection | None,
        *,
        delete: bool,
    ) -> JobHandle | JobRecord:
        """Journal and start a job we did not create (another replica's, or from before).

        One conditional step, like a create: a job adopted already (by a lookup that raced
        this one, whose actor may have ended since) is never adopted again; its record is
        returned instead (or, for a delete of a job not settled, its actor started).
        """
        name, version, meta = key
        job_id = adopted_job_id(name, version, meta)
        self._require_lease()
        async with self._job_lock(job_id):
            handle = self._jobs.get(job_id)
            if handle is not None:
                return handle
            now = self._wall_clock()
            stripped = _without_secrets(pb.CreateTaskRequest(connection=connection))
            record = JobRecord(
                job_id=job_id,
                task_type=name,
                task_type_version=version,
                connector=connector.name,
                attempt=0,
                create_state=CreateState.CREATED,
                delete_state=DeleteState.REQUESTED if delete else DeleteState.NONE,
                phase=int(Phase.RUNNING),
                created_at=now,
                updated_at=now,
                resource_meta=meta,
                message="adopted: waiting for the first poll",
                create_request=bytes(stripped),
                owner=self._owner(),
            )
            adopted = Put(record, "adopted", lifecycle_detail(replica=self._owner(), delete=delete))
            existing = await self._journal.write_if_absent(adopted)
            if existing is not None:
                if delete and not is_settled(existing):
                    return await self._delete_journalled(connector, existing, connection)
                return existing
            self._metrics.connector(connector.name).adoptions += 1
            _log.info(
                "job %s: adopted a %s job we did not create",
                job_id,
                name,
                extra=job_fields(job_id, connector.name),
            )
            return self._start(
                connector,
                record,
                kwargs=connection_kwargs(connection) or None,
                resumed=True,
                new_intent=delete,
            )

    async def _revive(
        self, connector: AsyncConnector[Any], record: JobRecord, kwargs: Mapping[str, str]
    ) -> JobHandle | JobRecord:
        """Start the actor of a journalled job that has none, unless one started meanwhile
        (an adoption that committed while ``record`` was read) or the job has settled since
        (its record is returned). With replicas, only for a job this replica may own: one a
        live peer owns gets a journalled delete intent instead (``_delete_journalled``)."""
        async with self._job_lock(record.job_id):
            handle = self._jobs.get(record.job_id)
            if handle is not None:
                return handle
            current = await self._journal.get(record.job_id)
            if current is None or is_settled(current):
                return current or record
            mine = await self._claim(current)
            if mine is None:
                return await self._request_delete(current)
            return self._start_claimed(connector, mine, kwargs)

    async def _delete_journalled(
        self, connector: AsyncConnector[Any], record: JobRecord, connection: Connection | None
    ) -> JobHandle | JobRecord:
        """A delete of a journalled, unsettled job with no actor here (under its lock)."""
        mine = await self._claim(record)
        if mine is None:
            return await self._request_delete(record)
        return self._start_claimed(connector, mine, connection_kwargs(connection))

    async def _request_delete(self, record: JobRecord) -> JobRecord:
        """Journal the intent to cancel a job a live peer runs, and wake that peer: its
        actor restarts from the row and makes the one external cancel. The row as now."""
        replica = self._replica
        assert replica is not None
        if record.delete_state == DeleteState.REQUESTED:
            return record
        now = self._wall_clock()
        detail = lifecycle_detail(replica=replica.id)
        updated = await replica.journal.request_delete(
            record.job_id, now, "cancel requested: waiting for the job's owner to cancel it", detail
        )
        if updated is not None:
            _log.info(
                "job %s: delete intent journalled for its owner %s",
                record.job_id,
                updated.owner,
                extra=job_fields(record.job_id, record.connector),
            )
        return updated or record

    # -- GetTaskLogs, GetTaskMetrics -------------------------------------------------------

    async def meta_to_act_on(
        self, connector: AsyncConnector[Any], category: pb.TaskCategory | None, data: bytes
    ) -> ResourceMeta:
        """A known job's meta, or an unknown one whose MAC verifies. Errors: InvalidArgument."""
        assert category is not None  # connector_for_category checked it
        key = (category.name, category.version, data)
        if key in self._by_meta or await self._journal.find_by_meta(*key) is not None:
            return decode_meta(connector, payload_of(data))
        return decode_meta(connector, self._open(key))

    # -- DeleteTask ------------------------------------------------------------------------

    @_journal_faults_unavailable
    async def delete_task(self, request: pb.DeleteTaskRequest) -> pb.DeleteTaskResponse:
        category = request.task_category
        connector = connector_for_category(self.registry, category)
        assert category is not None
        key = (category.name, category.version, request.resource_meta)
        kwargs = connection_kwargs(request.connection)
        handle = self._by_meta.get(key)
        for _ in range(2):  # again once, from the journal, if the actor is fenced out
            if handle is None:
                handle = await self._delete_unknown(connector, key, request.connection, kwargs)
                if handle is None:
                    return pb.DeleteTaskResponse()  # settled, or the intent is journalled
            # Every DeleteTask brings the connection again: a resumed job waiting for it to
            # carry out a journalled cancel (or holding stale secrets) gets it even when we
            # answer at once.
            self._offer_credentials(handle, kwargs)
            if is_settled(handle.record) or handle.record.delete_state == DeleteState.REQUESTED:
                return pb.DeleteTaskResponse()  # nothing to cancel, or the intent is journalled
            message = Cancel(kwargs)
            try:
                handle.inbox.put(message)
                await message.reply.wait()
                return pb.DeleteTaskResponse()
            except trio.ClosedResourceError:
                if self._replica is None or is_settled(handle.record):
                    return pb.DeleteTaskResponse()  # the actor has ended: the job is finished
            except FencedOut:
                pass  # the row changed under the actor: its owner or intent is elsewhere
            await self._stop_one(handle)
            handle = None
        raise Unavailable("the job changed owner while it was being cancelled; retry")

    async def _delete_unknown(
        self,
        connector: AsyncConnector[Any],
        key: _MetaKey,
        connection: Connection | None,
        kwargs: Mapping[str, str],
    ) -> JobHandle | None:
        """The live actor to cancel a job without one in hand, or None when nothing is left
        to do here (settled, or the intent is journalled for the job's owner)."""
        found = await self._find(connector, key)
        if found is None:
            found = await self._adopt(connector, key, connection, delete=True)
        if isinstance(found, JobRecord):
            if is_settled(found):
                return None
            found = await self._revive(connector, found, kwargs)
            if isinstance(found, JobRecord):
                return None
        return found

    def _offer_credentials(self, handle: JobHandle, kwargs: Mapping[str, str]) -> None:
        if not kwargs or kwargs == handle.last_kwargs:
            return
        try:
            handle.inbox.put(Credentials(dict(kwargs)))
        except trio.ClosedResourceError:
            return
        handle.last_kwargs = dict(kwargs)


@runtime_checkable
class _Flushable(Protocol):
    async def flush(self) -> None: ...


def _fence(record: JobRecord) -> tuple[str | None, int]:
    return (record.owner, record.epoch)


def _meta_key(record: JobRecord) -> _MetaKey:
    assert record.resource_meta is not None
    return (record.task_type, record.task_type_version, record.resource_meta)


def _as_journalled(request: pb.CreateTaskRequest, received: bytes | None) -> bytes:
    """The bytes journalled for a CreateTask: as received when the request has no
    connection, else encoded again with the connection's values blanked.

    Hot path: encoding the request again costs as much as parsing it. Without a connection
    field (none parsed, and the edge refused one of the wrong wire type) the bytes hold no
    secret; with one, even empty, they might (a map key sent twice: the last value wins).
    """
    if received is not None and request.connection is None:
        return received
    return bytes(_without_secrets(request))


def _without_secrets(request: pb.CreateTaskRequest) -> pb.CreateTaskRequest:
    """The request as journalled: connection values blanked, keys kept.

    The keys tell a resumed job that it must wait for credentials.
    """
    connection = request.connection
    if connection is None:
        return request
    blank = Connection(
        task_type=connection.task_type,
        secrets=dict.fromkeys(connection.secrets, ""),
        configs=dict.fromkeys(connection.configs, ""),
    )
    return pb.CreateTaskRequest(
        inputs=request.inputs,
        template=request.template,
        output_prefix=request.output_prefix,
        task_execution_metadata=request.task_execution_metadata,
        connection=blank,
    )
