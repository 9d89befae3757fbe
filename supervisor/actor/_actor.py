"""One actor per external job.

An actor owns its job's whole life: create (or reconcile a create that was in flight at a
crash), poll on the connector's schedule, cancel, finish. It is the only writer of its
job's journal row, and every change is journalled before it is published (``handle``) or
acted on. The supervisor talks to it through ``handle.inbox`` (messages in ``_messages``)
and reads ``handle.answer`` — the GetTask answer for the last journalled state — without
ever reaching the external service.

One Trio task per actor (memory per live job counts at 100,000 jobs). Its life is a chain
of steps, each an async method that does its part and returns the next step: ``start``,
``create``, ``created``, then ``wait`` and ``poll`` in turn until the job is terminal, and
``cancel`` (after ``time_out`` when the job's deadline passed) when asked. ``wait`` takes
the messages (cancel requests, credentials); a message interrupts a sleep, and a cancel
request also a poll in flight, so DeleteTask is answered as soon as the intent is
journalled. Once the intent is published the supervisor answers further DeleteTasks
itself; the actor carries out the one external cancel. Retries wait by a ``Backoff``
value (``_backoff``); the wait for secrets after a restart is ``_credentials``.

Errors of external calls: ``PermanentError`` fails the job; ``JobNotFound`` from ``get``
makes it RETRYABLE_FAILED and from ``delete`` counts as deleted; anything else (including
a call that outlives ``connector.call_timeout``) is retried with exponential backoff and
jitter.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from connectors import (
    AsyncConnector,
    JobNotFound,
    PermanentError,
    Phase,
    ResourceMeta,
)
from flyteproto.flyteidl2 import connector as pb

from .._errors import ConnectorFailed, ServiceError, Unavailable, connector_failed
from ..journal import (
    TERMINAL_PHASES,
    CreateState,
    DeleteState,
    JobRecord,
    JournalError,
    JournalLike,
    JournalLost,
    Put,
    phase_is_final,
)
from ..observe import ConnectorMetrics, Metrics
from ..wire import native_inputs, payload_of, resource_to_proto
from ._answer import encode_answer
from ._backoff import NO_FAILURES
from ._changes import with_observation, with_phase
from ._credentials import CredentialsWait, request_needs_credentials
from ._messages import Cancel, Credentials, Inbox, Latch, Reply
from ._observer import Observation, Observer, observation_of
from ._outage import JOURNAL_RETRY_INTERVAL, JOURNAL_RETRY_MAX, JournalFaults
from ._timers import Timers

__all__ = ["JobContext", "JobHandle", "actor_ended", "first_step"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _unmeasured() -> ConnectorMetrics:
    return Metrics().connector("")


def _unsealed(_task_type: str, _version: int, meta: bytes) -> bytes:
    return meta


def _always() -> bool:
    return True


async def _at_once() -> None:
    await trio.lowlevel.checkpoint()


@dataclass(frozen=True)
class JobContext:
    """What every actor of one connector shares (all of it read-only or thread-safe)."""

    connector: AsyncConnector[Any]
    journal: JournalLike
    limiter: trio.CapacityLimiter
    wall_clock: Callable[[], float]
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    metrics: ConnectorMetrics = dataclasses.field(default_factory=_unmeasured)
    faults: JournalFaults = dataclasses.field(default_factory=JournalFaults)
    #: (task type, version, the connector's bytes) -> the resource_meta we hand out (MAC'd).
    seal: Callable[[str, int, bytes], bytes] = _unsealed
    #: False while this replica's lease may have lapsed: no external call may start then;
    #: ``wait_to_act`` waits until it is confirmed (the actor is stopped if its job moved).
    may_act: Callable[[], bool] = _always
    wait_to_act: Callable[[], Awaitable[None]] = _at_once
    #: Wakes the connector's sleeping actors; its ``run`` must be running while they are.
    timers: Timers = dataclasses.field(default_factory=Timers)


class JobHandle:
    """The supervisor's view of one live actor.

    Only the actor assigns ``record``/``create_error``; the supervisor reads them (and
    ``answer``, derived from ``record``) and puts messages in ``inbox``.
    """

    __slots__ = (
        "_answer",
        "_record",
        "create_error",
        "created",
        "ended",
        "inbox",
        "last_kwargs",
        "needs_credentials",
        "polled",
        "run_scope",
    )

    def __init__(self, record: JobRecord) -> None:
        self._record = record
        self._answer: bytes | None = None
        self.inbox = Inbox()
        self.created = Latch()  # create settled: resource_meta or create_error is set
        self.polled = Latch()  # first poll (or terminal state) after start
        self.create_error: ServiceError | None = None
        self.last_kwargs: Mapping[str, str] | None = None  # owned by the supervisor
        # Also the supervisor's: the scope its actor task runs in while it runs (cancelled
        # to stop it), and its end (a field each, not a dict of tuples: memory per job).
        self.run_scope: trio.CancelScope | None = None
        self.ended = Latch()
        # Its journalled request carries connection keys (known once ``record`` no longer
        # holds the request: see ``JobRecord.create_request``).
        self.needs_credentials = False

    @property
    def record(self) -> JobRecord:
        return self._record

    @record.setter
    def record(self, record: JobRecord) -> None:
        self._record = record
        self._answer = None

    @property
    def answer(self) -> bytes:
        """The serialised GetTaskResponse for ``record``.

        Hot path (every GetTask of a live job): encoded on the first ask after each change
        and kept as bytes only (a job nobody asks about pays nothing; bytes take a fraction
        of the memory of a message tree).
        """
        answer = self._answer
        if answer is None:
            answer = self._answer = encode_answer(self._record)
        return answer

    @property
    def job_id(self) -> str:
        return self._record.job_id


def first_step(
    handle: JobHandle,
    ctx: JobContext,
    *,
    kwargs: Mapping[str, str] | None,
    resumed: bool,
    request: pb.CreateTaskRequest | None = None,
    new_intent: bool = False,
) -> Step | None:
    """One job's actor, as its first step: the caller (the supervisor, in the frame of the
    job's task: no coroutine frame of its own per live job) awaits each step for the next
    until one returns None (this one never is), then calls ``actor_ended`` in a
    ``finally``. Cancellation: leaves the journal as it was (resume redoes).

    ``request``: the CreateTask request in hand, for a new job (the journalled one is parsed
    only when it is not given); the caller must drop its own reference. ``new_intent``: the
    record's intent to delete was journalled just now by the caller (an adoption), so no
    cancel of it can have reached the service.
    """
    actor = _Actor(
        handle, ctx, kwargs=kwargs, resumed=resumed, request=request, new_intent=new_intent
    )
    return actor.start


def actor_ended(handle: JobHandle) -> None:
    """The end of an actor, however it ended: wake who waits, answer what is queued."""
    handle.created.set()
    handle.polled.set()
    _close_inbox(handle)


def forget_request(handle: JobHandle) -> None:
    """Drop the journalled request from ``handle.record`` (the journal keeps it; a put
    without it keeps it there), noting first whether it needs credentials."""
    record = handle.record
    if record.create_request is None:
        return
    handle.needs_credentials = handle.needs_credentials or request_needs_credentials(
        record.create_request
    )
    handle.record = dataclasses.replace(record, create_request=None)


def _close_inbox(handle: JobHandle) -> None:
    """Answer what is still queued, then close: later senders see the actor is gone."""
    settled = handle.record.delete_state == DeleteState.DONE or phase_is_final(handle.record)
    for message in handle.inbox.close():
        if isinstance(message, Cancel):
            message.reply.set(None if settled else Unavailable("the job's actor stopped; retry"))


#: One step of an actor's life: does its part, then returns the next step (None: the end).
Step = Callable[[], Awaitable["Step | None"]]


class _PollNow:
    """``_Actor.until_due``: poll now."""


_POLL = _PollNow()


class _Actor:
    """One job's life as explicit steps: ``start`` -> ``create`` -> ``created`` -> ``wait``
    <-> ``poll``, and ``cancel`` (after ``time_out`` when the deadline passed). Each step
    returns the next; the supervisor runs them until one returns None (``first_step``)."""

    __slots__ = (
        "backoff",
        "call_expired",
        "cancel_reason",
        "connector",
        "credentials",
        "ctx",
        "handle",
        "meta",
        "new_intent",
        "next_poll",
        "observer",
        "request",
        "resumed",
        "scope",
    )

    def __init__(
        self,
        handle: JobHandle,
        ctx: JobContext,
        *,
        kwargs: Mapping[str, str] | None,
        resumed: bool,
        request: pb.CreateTaskRequest | None,
        new_intent: bool = False,
    ) -> None:
        self.handle = handle
        self.ctx = ctx
        self.connector = ctx.connector
        self.request = request
        self.resumed = resumed
        self.new_intent = new_intent
        self.cancel_reason = ""  # why the supervisor itself cancels, if it does
        if resumed:
            forget_request(handle)
        self.credentials = CredentialsWait(kwargs, needed=handle.needs_credentials)
        self.backoff = NO_FAILURES  # of polls
        self.next_poll = 0.0
        self.meta: ResourceMeta | None = None
        self.scope: trio.CancelScope | None = None  # of the polls (``wait``)
        self.call_expired = False  # the call in flight outlived the call timeout
        # Remembers the last report's JSON: cheap polls while nothing changes.
        self.observer = Observer(handle.record if resumed else None)

    # -- journal ---------------------------------------------------------------------------

    @property
    def record(self) -> JobRecord:
        return self.handle.record

    async def commit(
        self,
        kind: str,
        detail: Mapping[str, Any] | None = None,
        *,
        reply: Reply | None = None,
        **changes: Any,
    ) -> None:
        """Journal ``changes`` to the current record, then publish it."""
        record = dataclasses.replace(self.record, updated_at=self.ctx.wall_clock(), **changes)
        await self.commit_record(record, kind, detail or {}, reply=reply)

    async def commit_record(
        self,
        record: JobRecord,
        kind: str,
        detail: Mapping[str, Any],
        *,
        reply: Reply | None = None,
    ) -> None:
        """Journal ``record``, then publish it. A journal fault is waited out (``_outage``):
        the write is retried with backoff, holding ``record``, until it commits; meanwhile
        a CreateTask waiting for this job and ``reply`` (a DeleteTask's) get UNAVAILABLE.

        Cancellation: between two tries (the supervisor stopping); the write itself is
        shielded, since an interrupted write would leave the journal and our view
        disagreeing.
        """
        put = Put(record, kind, json.dumps(dict(detail), sort_keys=True))
        faults = self.ctx.faults
        backoff = NO_FAILURES
        try:
            while True:
                try:
                    with trio.CancelScope(shield=True):
                        await self.ctx.journal.write(put)
                    break
                except JournalError as exc:
                    faults.failed(exc)
                    if not backoff.failures:
                        faults.hold()
                        self.answer_unavailable(faults.last_error, reply)
                    backoff = backoff.failed(exc)
                    # One line per job and outage; the edge logs the outage as a whole.
                    _log.log(
                        logging.WARNING if backoff.failures == 1 else logging.DEBUG,
                        "job %s: journal write %r failed (%d), retrying: %s",
                        self.handle.job_id,
                        kind,
                        backoff.failures,
                        faults.last_error,
                    )
                    if isinstance(exc, JournalLost):  # never comes back: wait for the stop
                        await self.sleep_refusing_cancels(math.inf, faults.last_error)
                    delay = backoff.delay(
                        JOURNAL_RETRY_INTERVAL, self.ctx.rng, cap=JOURNAL_RETRY_MAX
                    )
                    await self.sleep_refusing_cancels(delay, faults.last_error)
        finally:
            if backoff.failures:
                faults.release()
        if backoff.failures:
            _log.info(
                "job %s: journal write %r committed after %d failure(s)",
                self.handle.job_id,
                kind,
                backoff.failures,
            )
            if isinstance(self.handle.create_error, Unavailable):
                self.handle.create_error = None
        self.publish(record)

    async def sleep_refusing_cancels(self, seconds: float, message: str) -> None:
        """Sleep ``seconds``; a DeleteTask meanwhile is answered UNAVAILABLE at once (its
        intent cannot be journalled now; the caller retries)."""
        inbox = self.handle.inbox
        deadline = trio.current_time() + seconds
        while trio.current_time() < deadline:
            inbox.refuse_cancels(Unavailable(message))
            await inbox.park(self.ctx.timers, deadline, on_credentials=False)
        inbox.refuse_cancels(Unavailable(message))

    def answer_unavailable(self, message: str, reply: Reply | None) -> None:
        """Answer who waits on this actor UNAVAILABLE while it waits for the journal."""
        if reply is not None:
            reply.set(Unavailable(message))
        if not self.handle.created.is_set():
            self.handle.create_error = Unavailable(message)
            self.handle.created.set()

    def publish(self, record: JobRecord) -> None:
        self.handle.record = record  # also drops the encoded answer of the previous record

    # -- messages --------------------------------------------------------------------------

    async def take_messages(self) -> None:
        """Act on every queued message (those arriving meanwhile included)."""
        while (message := self.handle.inbox.take()) is not None:
            if isinstance(message, Credentials):
                self.credentials.offer(message.kwargs)
            else:
                await self.request_cancel(message)

    async def request_cancel(self, message: Cancel) -> None:
        if message.kwargs and self.credentials.kwargs is None:
            self.credentials.offer(message.kwargs)
        try:
            if self.record.delete_state == DeleteState.NONE and not phase_is_final(self.record):
                if message.reason:  # the supervisor's own cancel (a superseded attempt)
                    self.cancel_reason = message.reason
                    await self.commit(
                        "delete_intent",
                        {"reason": message.reason},
                        delete_state=DeleteState.REQUESTED,
                        message=message.reason,
                        reply=message.reply,
                    )
                else:
                    await self.commit(
                        "delete_intent", delete_state=DeleteState.REQUESTED, reply=message.reply
                    )
        except BaseException as exc:
            message.reply.set(exc)
            raise
        message.reply.set()

    async def have_credentials(self) -> bool:
        """True when the calls can be made; False after a wait that a message ended."""
        return await self.credentials.ready(self.record, self.handle.inbox, self.announce_wait)

    async def announce_wait(self, message: str) -> None:
        await self.commit("waiting_for_credentials", message=message)

    async def await_credentials(self) -> None:
        """Wait for the credentials, taking messages meanwhile (create and cancel)."""
        while not await self.have_credentials():
            await self.take_messages()

    # -- steps -----------------------------------------------------------------------------

    async def start(self) -> Step | None:
        if self.record.create_state == CreateState.PENDING:
            return self.create
        return self.created

    async def create(self) -> Step | None:
        """Create the external job (or reconcile a create cut short by a crash).

        Ends the actor when the create failed (``handle.create_error`` says why).
        """
        if self.resumed and not self.connector.supports_idempotent_create:
            message = (
                f"the supervisor stopped while creating this job and {self.connector.name} "
                "cannot de-duplicate creates: the external job may or may not exist; "
                "not retried to avoid running it twice"
            )
            await self.settle_create_failure(CreateState.ABANDONED, message)
            return None
        await self.await_credentials()
        request, self.request = self.request, None
        if request is None:
            request = pb.CreateTaskRequest.parse(await self.journalled_request())
        try:
            meta = await self.external(
                self.connector.create,
                task_template=request.template,
                output_prefix=request.output_prefix,
                inputs=native_inputs(request.inputs),
                task_execution_metadata=request.task_execution_metadata,
                idempotency_key=self.handle.job_id,
            )
            if not isinstance(meta, ResourceMeta):
                raise TypeError(f"create returned {type(meta).__name__}, not a ResourceMeta")
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            _log.warning(
                "job %s: %s create failed: %s", self.handle.job_id, self.connector.name, exc
            )
            error = connector_failed(self.connector.name, "create", exc)
            await self.settle_create_failure(CreateState.FAILED, str(error))
            return None
        await self.commit(
            "created",
            {"reconciled": self.resumed},
            create_state=CreateState.CREATED,
            resource_meta=self.ctx.seal(
                self.record.task_type, self.record.task_type_version, meta.encode()
            ),
            message="",
            create_request=None,  # the journal keeps it; live jobs do not (memory)
        )
        return self.created

    async def journalled_request(self) -> bytes:
        """The job's journalled CreateTask request: read back (a live record does not hold
        it). Errors: JournalError; ConnectorFailed when the journal has none."""
        if self.record.create_request is not None:
            return self.record.create_request
        current = await self.ctx.journal.get(self.handle.job_id)
        if current is None or current.create_request is None:
            raise ConnectorFailed("the job's journalled CreateTask request is missing")
        return current.create_request

    async def settle_create_failure(self, state: CreateState, message: str) -> None:
        now = self.ctx.wall_clock()
        record = with_phase(self.record, Phase.FAILED, message, now=now)
        await self.commit_record(
            dataclasses.replace(record, create_state=state), "create_failed", {"message": message}
        )
        self.handle.create_error = ConnectorFailed(message)
        self.handle.created.set()

    async def created(self) -> Step | None:
        """The external job exists: decode its meta and schedule the first poll."""
        self.handle.created.set()
        assert self.record.resource_meta is not None
        self.meta = self.connector.metadata_type.decode(payload_of(self.record.resource_meta))
        self.next_poll = trio.current_time() + (
            0.0 if self.resumed else self.connector.poll_interval
        )
        if (
            self.resumed
            and not self.new_intent
            and self.record.delete_state == DeleteState.REQUESTED
        ):
            return self.reconcile_cancel
        return self.wait

    async def wait(self) -> Step | None:
        """Wait for the next poll and poll, over and over, until the job needs another step.

        Hot path (every poll of every idle job): the polls run in one cancel scope, armed
        only during each call (a Cancel or the call timeout cancels it), so a poll costs no
        scope, deadline or exception of its own; a new scope is made only after one was
        cancelled.
        """
        with trio.CancelScope() as scope:
            self.scope = scope
            while isinstance(step := await self.until_due(), _PollNow):
                await self.poll(scope)
            return step
        # A call was cut short: by a Cancel (its outcome is dropped; the next poll after the
        # cancel is none: the job ends ABORTED), or by the call timeout.
        self.scope = None
        if not self.call_expired or self.handle.inbox.cancel_waiting():
            return self.wait
        await self.polled(self.timed_out_poll())
        return self.wait

    async def until_due(self) -> Step | _PollNow | None:
        """Take the messages, then sleep until the next poll (a message or the job's
        deadline ends the sleep early), then make sure of the credentials."""
        await self.take_messages()
        if self.finished():
            return None
        if self.record.delete_state == DeleteState.REQUESTED:
            return self.cancel
        deadline = self.deadline()
        until = min(self.next_poll, deadline)
        if until > trio.current_time():
            # Parked until the connector's timer or a message wakes it: at 100,000 jobs, a
            # cancel scope and a deadline per sleep show in the profile.
            await self.handle.inbox.parking(self.ctx.timers, until)
            if self.handle.inbox.pending():
                return self.wait
        if trio.current_time() >= deadline:
            return self.time_out
        if not await self.have_credentials():
            return self.wait
        return _POLL

    async def poll(self, scope: trio.CancelScope) -> None:
        """Poll once and journal what changed (a Cancel or the call timeout cancels
        ``scope`` during the call)."""
        due = max(self.next_poll, self.credentials.arrived_at)
        await self.polled(await self.fetch(due=due, scope=scope))

    async def polled(self, outcome: Observation | Exception) -> None:
        await self.apply(outcome)
        self.next_poll = trio.current_time() + self.backoff.delay(
            self.connector.poll_interval, self.ctx.rng
        )
        self.handle.polled.set()

    def expire(self) -> None:
        """``Timers``: the call in flight outlived the call timeout."""
        self.call_expired = True
        if self.scope is not None:
            self.scope.cancel()

    async def time_out(self) -> Step | None:
        await self.commit("timeout", delete_state=DeleteState.REQUESTED)
        return functools.partial(self.cancel, timed_out=True)

    async def cancel(self, *, timed_out: bool = False) -> Step | None:
        """Carry out the journalled intent to cancel: exactly one successful external cancel."""
        await self.await_credentials()
        backoff = NO_FAILURES
        while True:
            try:
                await self.external(self.connector.delete, self.meta)
                break
            except (trio.Cancelled, KeyboardInterrupt):
                raise
            except JobNotFound:
                break
            except Exception as exc:
                backoff = backoff.failed(exc)
                _log.warning(
                    "job %s: cancel failed (%d): %s", self.handle.job_id, backoff.failures, exc
                )
                await trio.sleep(backoff.delay(self.connector.poll_interval, self.ctx.rng))
        await self.cancelled(timed_out=timed_out)
        return None

    async def reconcile_cancel(self) -> Step | None:
        """Before carrying out an intent to cancel found at resume, ask the service: the
        cancel may have reached it before the crash. Cancelled or finished: done, journalled,
        no second call; "not found" counts as deleted; still running: cancel."""
        await self.await_credentials()
        backoff = NO_FAILURES
        while True:
            outcome = await self.fetch(due=None)
            if isinstance(outcome, Observation):
                break
            if isinstance(outcome, JobNotFound):
                await self.cancelled(reconciled=True)
                return None
            if isinstance(outcome, PermanentError | ConnectorFailed):
                return self.cancel  # the service cannot tell: the cancel must tolerate it
            backoff = backoff.failed(outcome)
            _log.warning(
                "job %s: asking whether the cancel was done failed (%d): %s",
                self.handle.job_id,
                backoff.failures,
                outcome,
            )
            await trio.sleep(backoff.delay(self.connector.poll_interval, self.ctx.rng))
        if outcome.phase == Phase.ABORTED:
            await self.cancelled(reconciled=True)
        elif outcome.phase in TERMINAL_PHASES:
            record = with_observation(self.record, outcome, now=self.ctx.wall_clock())
            await self.commit_record(
                dataclasses.replace(record, delete_state=DeleteState.DONE),
                "deleted",
                {"phase": Phase(outcome.phase).name, "reconciled": True},
            )
        else:
            return self.cancel
        return None

    async def cancelled(self, *, timed_out: bool = False, reconciled: bool = False) -> None:
        """Journal that the external job is cancelled."""
        deadline = self.record.deadline
        if timed_out or (deadline is not None and self.ctx.wall_clock() >= deadline):
            phase, message = Phase.FAILED, f"timed out after {self._timeout_text()}: cancelled"
        elif self.cancel_reason:
            phase, message = Phase.ABORTED, f"{self.cancel_reason}: the external job was cancelled"
        else:
            phase, message = Phase.ABORTED, "aborted: the external job was cancelled"
        record = with_phase(self.record, phase, message, now=self.ctx.wall_clock())
        detail: dict[str, Any] = {"phase": phase.name}
        if reconciled:
            detail["reconciled"] = True
        await self.commit_record(
            dataclasses.replace(record, delete_state=DeleteState.DONE), "deleted", detail
        )

    # -- the parts of the steps ------------------------------------------------------------

    def finished(self) -> bool:
        return phase_is_final(self.record) and self.record.delete_state != DeleteState.REQUESTED

    def deadline(self) -> float:
        if self.record.deadline is None:
            return math.inf
        return trio.current_time() + (self.record.deadline - self.ctx.wall_clock())

    async def external(
        self,
        fn: Callable[..., Awaitable[_T]],
        *args: Any,
        due: float | None = None,
        scope: trio.CancelScope | None = None,
        **kw: Any,
    ) -> _T:
        """Call the external service, under the connector's cap and call timeout.

        ``due``: when the call should have started; how late it got under the cap is
        measured as poll lag. ``scope``: the caller's scope, which a Cancel and the call
        timeout cancel (``call_expired`` tells which); without one, a call that outlives the
        timeout raises ``trio.TooSlowError``.
        """
        metrics = self.ctx.metrics
        if scope is None:
            async with self.ctx.limiter:
                if not self.ctx.may_act():  # another replica may own the job by now
                    await self.ctx.wait_to_act()
                self.count_call(fn, due)
                try:
                    with trio.fail_after(self.connector.call_timeout):
                        return await fn(*args, **(self.credentials.kwargs or {}), **kw)
                finally:
                    metrics.in_flight -= 1
        # Hot path (every poll): ``scope`` is armed for the call (a Cancel cancels it), a
        # free slot is taken without a schedule point of its own (the call itself is one),
        # and the call timeout is the connector's timer's to enforce (``expire``).
        inbox = self.handle.inbox
        inbox.arm(scope)
        try:
            if scope.cancel_called:
                await trio.lowlevel.checkpoint_if_cancelled()  # a Cancel came first: no call
            limiter = self.ctx.limiter
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await limiter.acquire()
            try:
                if not self.ctx.may_act():  # another replica may own the job by now
                    await self.ctx.wait_to_act()
                self.count_call(fn, due)
                timers = self.ctx.timers
                self.call_expired = False
                timers.begin_call(self, trio.current_time() + self.connector.call_timeout)
                try:
                    return await fn(*args, **(self.credentials.kwargs or {}), **kw)
                finally:
                    timers.end_call(self)
                    metrics.in_flight -= 1
            finally:
                limiter.release()
        finally:
            inbox.disarm()

    def count_call(self, fn: Callable[..., object], due: float | None) -> None:
        """Metrics of a call about to start (and in flight until the caller says)."""
        metrics = self.ctx.metrics
        if due is not None:
            metrics.observe_lag(max(0.0, trio.current_time() - due))
        metrics.count_call(getattr(fn, "__name__", ""))  # create, get or delete
        metrics.in_flight += 1

    def timed_out_poll(self) -> Exception:
        """What a poll whose call outlived the call timeout found (``fetch`` with a scope)."""
        self.call_expired = False
        self.ctx.metrics.polls += 1
        self.ctx.metrics.poll_errors += 1
        return trio.TooSlowError()

    async def fetch(
        self, *, due: float | None, scope: trio.CancelScope | None = None
    ) -> Observation | Exception:
        """Poll the external service once: what it reported, or the error it raised."""
        metrics = self.ctx.metrics
        try:
            resource = await self.external(self.connector.get, self.meta, due=due, scope=scope)
            seen = self.observer.observe(resource_to_proto(resource, connector=self.connector.name))
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            metrics.polls += 1
            metrics.poll_errors += 1
            return exc
        metrics.polls += 1
        return seen

    async def apply(self, outcome: Observation | BaseException) -> None:
        """Journal and publish what a poll found (nothing when nothing changed)."""
        if isinstance(outcome, Observation):
            self.backoff = NO_FAILURES
            if outcome != observation_of(self.record):
                kind = "phase" if outcome.phase != self.record.phase else "update"
                record = with_observation(self.record, outcome, now=self.ctx.wall_clock())
                await self.commit_record(record, kind, {"phase": Phase(outcome.phase).name})
        elif isinstance(outcome, PermanentError):
            await self.settle(Phase.FAILED, f"{self.connector.name}: {outcome}", "failed")
        elif isinstance(outcome, JobNotFound):
            message = f"{self.connector.name} no longer knows this job: {outcome}".rstrip(": ")
            await self.settle(Phase.RETRYABLE_FAILED, message, "lost")
        elif isinstance(outcome, ConnectorFailed):
            await self.settle(Phase.FAILED, str(outcome), "failed")
        else:
            self.backoff = self.backoff.failed(outcome)
            error = _describe(outcome)
            message = (
                f"polling {self.connector.name} failed {self.backoff.failures} time(s), "
                f"retrying: {error}"
            )
            _log.warning("job %s: %s", self.handle.job_id, message)
            await self.commit("poll_error", {"error": error}, message=message)

    async def settle(self, phase: Phase, message: str, kind: str) -> None:
        record = with_phase(self.record, phase, message, now=self.ctx.wall_clock())
        await self.commit_record(record, kind, {"message": message})

    def _timeout_text(self) -> str:
        if self.record.deadline is None:
            return "its timeout"
        return f"{self.record.deadline - self.record.created_at:g}s"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
