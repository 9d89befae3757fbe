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

import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from connectors import AsyncConnector, ConnectorRegistry, Phase, ResourceMeta
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import Connection, TaskTemplate

from .._errors import ConnectorFailed, InvalidArgument, NotFound, Unavailable
from ..actor import (
    Cancel,
    Credentials,
    Inbox,
    JobContext,
    JobHandle,
    JournalFaults,
    answer_for,
    journal_unavailable,
    run_actor,
)
from ..journal import (
    CreateState,
    DeleteState,
    FencedOut,
    JobRecord,
    JournalError,
    JournalLike,
    Put,
    is_settled,
)
from ..observe import Metrics, bind_job, job_fields
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
    ) -> None:
        """``meta_key`` MACs the resource_metas we hand out (shared by replicas); without one,
        a key generated into the journal is used. ``adopt_unsigned`` adopts metas without a
        MAC (a migration window); see ``MetaSeal``."""
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
        self._nursery: trio.Nursery | None = None
        self._faults = JournalFaults(self._metrics.journal_errors, self._metrics.journal_waiting)
        self.resumed = 0
        self.fenced = 0  # actors stopped because another replica took their job

    # -- running ---------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Supervisor]:
        """Start the actors' nursery and resume unfinished jobs; on exit cancel the actors.

        Cancelling an actor never touches its external job: the journal holds everything
        needed to carry on after a restart.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._open_seal()
                await self.resume()
                yield self
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

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
            try:
                connector = connector_for_type(
                    self.registry, record.task_type, record.task_type_version
                )
            except NotFound:
                _log.error(
                    "job %s: no connector for %s v%d: left in the journal, not resumed",
                    record.job_id,
                    record.task_type,
                    record.task_type_version,
                    extra=job_fields(record.job_id, record.connector),
                )
                continue
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
            ctx = JobContext(
                connector=connector,
                journal=self._journal,
                limiter=trio.CapacityLimiter(connector.max_concurrent_calls),
                wall_clock=self._wall_clock,
                rng=self._rng,
                metrics=self._metrics.connector(connector.name),
                faults=self._faults,
                seal=self._seal.seal,
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
            self._supervise, connector, handle, kwargs, resumed, request, new_intent
        )
        return handle

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
        try:
            while True:
                try:
                    await run_actor(
                        handle,
                        ctx,
                        kwargs=kwargs,
                        resumed=resumed,
                        request=request,
                        new_intent=new_intent,
                    )
                    return
                except FencedOut:
                    # Another replica owns the job now: stop, never touching the external job.
                    self.fenced += 1
                    _log.warning("job %s: fenced out by a new owner; actor stopped", handle.job_id)
                    return
                except Exception:
                    _log.exception("job %s: actor failed; restarting it", handle.job_id)
                    handle.inbox = Inbox()
                    resumed, request, new_intent = True, None, False
                    await trio.sleep(ACTOR_RESTART_DELAY)
        finally:
            self._forget(handle)

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
        return {"live_jobs": len(self._jobs), "resumed": self.resumed, "fenced": self.fenced}

    def journal_fault(self) -> str | None:
        """Why the journal fails while actors wait to write their results; None when none
        does (health is NOT_SERVING meanwhile)."""
        return self._faults.fault()

    # -- CreateTask ------------------------------------------------------------------------

    @_journal_faults_unavailable
    async def create_task(self, request: pb.CreateTaskRequest) -> pb.CreateTaskResponse:
        template = request.template
        if template is None or not template.type:
            raise InvalidArgument("template with a task type is required")
        connector = connector_for_type(self.registry, template.type, template.task_type_version)
        native_inputs(request.inputs)  # bad inputs are the caller's error: refuse them now
        metadata = request.task_execution_metadata
        job_id = job_id_for(template.type, template.task_type_version, metadata)
        kwargs = connection_kwargs(request.connection)
        require_connection(connector, kwargs)
        async with self._job_lock(job_id):
            handle = self._jobs.get(job_id)
            if handle is not None and handle.record.create_state == CreateState.FAILED:
                handle = None  # its actor is ending; this request tries the create again
            if handle is not None:
                self._offer_credentials(handle, kwargs)
            else:
                # One conditional insert, group-committed: a new job costs no read.
                record = self._new_record(connector, job_id, request)
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
                    handle = self._start(connector, existing, kwargs=kwargs, resumed=True)
                else:  # FAILED: this request tries the create again
                    await self._journal.write(intent)
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

    def _new_record(
        self, connector: AsyncConnector[Any], job_id: str, request: pb.CreateTaskRequest
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
            create_request=bytes(_without_secrets(request)),
            deadline=now + timeout.total_seconds() if timeout else None,
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
            )
            adopted = Put(record, "adopted", lifecycle_detail(delete=delete))
            existing = await self._journal.write_if_absent(adopted)
            if existing is not None:
                if delete and not is_settled(existing):
                    kwargs = connection_kwargs(connection) or None
                    return self._start(connector, existing, kwargs=kwargs, resumed=True)
                return existing
            self._metrics.connector(connector.name).adoptions.inc()
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
        (its record is returned)."""
        async with self._job_lock(record.job_id):
            handle = self._jobs.get(record.job_id)
            if handle is not None:
                return handle
            current = await self._journal.get(record.job_id)
            if current is None or is_settled(current):
                return current or record
            return self._start(connector, current, kwargs=kwargs or None, resumed=True)

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
        if handle is None:
            found = await self._find(connector, key)
            if found is None:
                found = await self._adopt(connector, key, request.connection, delete=True)
            if isinstance(found, JobRecord):
                if is_settled(found):
                    return pb.DeleteTaskResponse()
                found = await self._revive(connector, found, kwargs)
                if isinstance(found, JobRecord):
                    return pb.DeleteTaskResponse()  # settled meanwhile
            handle = found
        # Every DeleteTask brings the connection again: a resumed job waiting for it to carry
        # out a journalled cancel (or holding stale secrets) gets it even when we answer at once.
        self._offer_credentials(handle, kwargs)
        if is_settled(handle.record) or handle.record.delete_state == DeleteState.REQUESTED:
            return pb.DeleteTaskResponse()  # nothing to cancel, or the intent is journalled
        message = Cancel(kwargs)
        try:
            handle.inbox.put(message)
        except trio.ClosedResourceError:
            return pb.DeleteTaskResponse()  # the actor has ended: the job is finished
        await message.reply.wait()
        return pb.DeleteTaskResponse()

    def _offer_credentials(self, handle: JobHandle, kwargs: Mapping[str, str]) -> None:
        if not kwargs or kwargs == handle.last_kwargs:
            return
        try:
            handle.inbox.put(Credentials(dict(kwargs)))
        except trio.ClosedResourceError:
            return
        handle.last_kwargs = dict(kwargs)


def _meta_key(record: JobRecord) -> _MetaKey:
    assert record.resource_meta is not None
    return (record.task_type, record.task_type_version, record.resource_meta)


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
