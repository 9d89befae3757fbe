"""One actor per external job.

An actor owns its job's whole life: create (or reconcile a create that was in flight at a
crash), poll on the connector's schedule, cancel, finish. It is the only writer of its
job's journal row, and every change is journalled before it is published (``handle``) or
acted on. The supervisor talks to it through ``handle.inbox`` (messages in ``_messages``)
and reads ``handle.answer`` — the GetTask answer for the last journalled state — without
ever reaching the external service.

One Trio task per actor (memory per live job counts at 100,000 jobs): create, then poll
until terminal, then cancel if asked. Between two steps it takes its messages (cancel
requests, credentials); a message interrupts a sleep, and a cancel request also a poll in
flight, so DeleteTask is answered as soon as the intent is journalled. Once the intent is
published the supervisor answers further DeleteTasks itself; the actor carries out the one
external cancel.

Errors of external calls: ``PermanentError`` fails the job; ``JobNotFound`` from ``get``
makes it RETRYABLE_FAILED and from ``delete`` counts as deleted; anything else (including
a call that outlives ``connector.call_timeout``) is retried with exponential backoff and
jitter.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from flyteidl2.connector import connector_pb2

from connectors import (
    AsyncConnector,
    JobNotFound,
    PermanentError,
    Phase,
    ResourceMeta,
)
from flyteproto.flyteidl2 import connector as pb

from .._errors import ConnectorFailed, ServiceError, Unavailable
from ..journal import CreateState, DeleteState, JobRecord, JournalLike, Put, phase_is_final
from ..observe import ConnectorMetrics, Metrics
from ..wire import native_inputs, payload_of, resource_to_proto
from ._answer import encode_answer
from ._changes import with_observation, with_phase
from ._messages import Cancel, Credentials, Inbox
from ._observer import Observation, Observer, observation_of

__all__ = ["BACKOFF_MAX", "JobContext", "JobHandle", "run_actor"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Delay after the n-th consecutive failure: min(BACKOFF_MAX, interval * 2**n), times a
#: random factor in [1 - BACKOFF_JITTER, 1].
BACKOFF_MAX = 300.0
BACKOFF_JITTER = 0.5


def _unmeasured() -> ConnectorMetrics:
    return Metrics().connector("")


def _unsealed(_task_type: str, _version: int, meta: bytes) -> bytes:
    return meta


@dataclass(frozen=True)
class JobContext:
    """What every actor of one connector shares (all of it read-only or thread-safe)."""

    connector: AsyncConnector[Any]
    journal: JournalLike
    limiter: trio.CapacityLimiter
    wall_clock: Callable[[], float]
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    metrics: ConnectorMetrics = dataclasses.field(default_factory=_unmeasured)
    #: (task type, version, the connector's bytes) -> the resource_meta we hand out (MAC'd).
    seal: Callable[[str, int, bytes], bytes] = _unsealed


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
        "inbox",
        "last_kwargs",
        "polled",
    )

    def __init__(self, record: JobRecord) -> None:
        self._record = record
        self._answer: bytes | None = None
        self.inbox = Inbox()
        self.created = trio.Event()  # create settled: resource_meta or create_error is set
        self.polled = trio.Event()  # first poll (or terminal state) after start
        self.create_error: ServiceError | None = None
        self.last_kwargs: Mapping[str, str] | None = None  # owned by the supervisor

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


async def run_actor(
    handle: JobHandle,
    ctx: JobContext,
    *,
    kwargs: Mapping[str, str] | None,
    resumed: bool,
    request: pb.CreateTaskRequest | None = None,
) -> None:
    """Run one job to its end. Cancellation: leaves the journal as it was (resume redoes).

    ``request``: the CreateTask request in hand, for a new job (the journalled one is parsed
    only when it is not given).
    """
    actor = _Actor(handle, ctx, kwargs=kwargs, resumed=resumed, request=request)
    try:
        await actor.lifecycle()
    finally:
        handle.created.set()
        handle.polled.set()
        _close_inbox(handle)


def _close_inbox(handle: JobHandle) -> None:
    """Answer what is still queued, then close: later senders see the actor is gone."""
    settled = handle.record.delete_state == DeleteState.DONE or phase_is_final(handle.record)
    for message in handle.inbox.close():
        if isinstance(message, Cancel):
            message.reply.set(None if settled else Unavailable("the job's actor stopped; retry"))


class _Actor:
    def __init__(
        self,
        handle: JobHandle,
        ctx: JobContext,
        *,
        kwargs: Mapping[str, str] | None,
        resumed: bool,
        request: pb.CreateTaskRequest | None,
    ) -> None:
        self.handle = handle
        self.ctx = ctx
        self.connector = ctx.connector
        self.kwargs = dict(kwargs) if kwargs is not None else None
        self.request = request
        self.needs_credentials: bool | None = None
        self.resumed = resumed
        self.announced_wait = False  # "waiting for credentials" journalled
        self.failures = 0
        self.retry_after = 0.0  # the service's own "not before" after the last failure
        self.timed_out = False
        self.cancel_reason = ""  # why the supervisor itself cancels, if it does
        self.credentials_at = -math.inf  # when credentials came after a wait (poll lag)
        self.meta: ResourceMeta | None = None
        # Remembers the last report's JSON: cheap polls while nothing changes.
        self.observer = Observer(handle.record if resumed else None)

    # -- journal ---------------------------------------------------------------------------

    @property
    def record(self) -> JobRecord:
        return self.handle.record

    async def commit(
        self, kind: str, detail: Mapping[str, Any] | None = None, **changes: Any
    ) -> None:
        """Journal ``changes`` to the current record, then publish it."""
        record = dataclasses.replace(self.record, updated_at=self.ctx.wall_clock(), **changes)
        await self.commit_record(record, kind, detail or {})

    async def commit_record(self, record: JobRecord, kind: str, detail: Mapping[str, Any]) -> None:
        # Shielded: an interrupted write would leave the journal and our view disagreeing.
        with trio.CancelScope(shield=True):
            await self.ctx.journal.write(
                Put(record, kind, json.dumps(dict(detail), sort_keys=True))
            )
        self.publish(record)

    def publish(self, record: JobRecord) -> None:
        self.handle.record = record  # also drops the encoded answer of the previous record

    # -- messages --------------------------------------------------------------------------

    async def take_messages(self) -> None:
        """Act on every queued message (those arriving meanwhile included)."""
        while (message := self.handle.inbox.take()) is not None:
            if isinstance(message, Credentials):
                self.got_credentials(message.kwargs)
            else:
                await self.request_cancel(message)

    def got_credentials(self, kwargs: Mapping[str, str]) -> None:
        self.kwargs = dict(kwargs)
        if self.announced_wait:
            self.credentials_at = trio.current_time()

    async def request_cancel(self, message: Cancel) -> None:
        if message.kwargs and self.kwargs is None:
            self.got_credentials(message.kwargs)
        try:
            if self.record.delete_state == DeleteState.NONE and not phase_is_final(self.record):
                if message.reason:  # the supervisor's own cancel (a superseded attempt)
                    self.cancel_reason = message.reason
                    await self.commit(
                        "delete_intent",
                        {"reason": message.reason},
                        delete_state=DeleteState.REQUESTED,
                        message=message.reason,
                    )
                else:
                    await self.commit("delete_intent", delete_state=DeleteState.REQUESTED)
        except BaseException as exc:
            message.reply.set(exc)
            raise
        message.reply.set()

    # -- lifecycle -------------------------------------------------------------------------

    async def lifecycle(self) -> None:
        if self.record.create_state == CreateState.PENDING and not await self.create():
            return
        self.handle.created.set()
        assert self.record.resource_meta is not None
        self.meta = self.connector.metadata_type.decode(payload_of(self.record.resource_meta))
        next_poll = trio.current_time() + (0.0 if self.resumed else self.connector.poll_interval)
        while True:
            await self.take_messages()
            if self.finished():
                return
            if self.record.delete_state == DeleteState.REQUESTED:
                await self.cancel()
                return
            if self.timed_out:
                await self.time_out()
                return
            if not await self.wait_until(next_poll):
                continue  # a message came, or the deadline passed: see to it first
            # A cancel request interrupts the poll (its outcome is dropped; the next poll
            # after the cancel is none: the job ends ABORTED).
            with self.handle.inbox.waking(on_credentials=False) as poll:
                outcome = await self.fetch(due=max(next_poll, self.credentials_at))
            if poll.cancelled_caught:
                continue
            await self.apply(outcome)
            next_poll = trio.current_time() + self.delay()
            self.handle.polled.set()

    def finished(self) -> bool:
        return phase_is_final(self.record) and self.record.delete_state != DeleteState.REQUESTED

    async def wait_until(self, when: float) -> bool:
        """Sleep until ``when``, then make sure of the credentials. False when a message or
        the job's deadline came first."""
        deadline = self.deadline()
        until = min(when, deadline)
        if until > trio.current_time():
            # One scope ends the wait, at its deadline or cancelled by a message: at 100,000
            # jobs, every scope and timer per poll shows in the profile.
            with self.handle.inbox.waking(until=until):
                await trio.sleep_forever()
            if self.handle.inbox.pending():
                return False
        if trio.current_time() >= deadline:
            self.timed_out = True
            return False
        return await self.ensure_credentials()

    def deadline(self) -> float:
        if self.record.deadline is None:
            return math.inf
        return trio.current_time() + (self.record.deadline - self.ctx.wall_clock())

    def delay(self) -> float:
        interval = self.connector.poll_interval
        if not self.failures:
            return interval
        backoff = min(BACKOFF_MAX, interval * 2.0**self.failures)
        jittered = backoff * (1 - BACKOFF_JITTER * self.ctx.rng.random())
        return max(jittered, self.retry_after)

    async def ensure_credentials(self) -> bool:
        """True when the job has the credentials its calls need; otherwise wait for a
        message and return False (the caller takes it, and asks again)."""
        if self.kwargs is not None:
            return True
        if self.needs_credentials is None:  # asked once, only of a job started without them
            self.needs_credentials = _credential_keys(self.record)
        if not self.needs_credentials:
            return True
        if not self.announced_wait:
            _log.info("job %s waits for credentials", self.handle.job_id)
            await self.commit(
                "waiting_for_credentials",
                message="waiting for credentials: the supervisor restarted and keeps secrets "
                "in memory only; the next request that brings the connection resumes this job",
            )
            self.announced_wait = True
        with self.handle.inbox.waking():
            await trio.sleep_forever()
        return False

    async def await_credentials(self) -> None:
        """Wait for the credentials, taking messages meanwhile (create and cancel)."""
        while not await self.ensure_credentials():
            await self.take_messages()

    async def external(
        self,
        operation: str,
        fn: Callable[..., Awaitable[_T]],
        *args: Any,
        due: float | None = None,
        **kw: Any,
    ) -> _T:
        """Call the external service, under the connector's cap and call timeout.

        ``due``: when the call should have started; how late it got under the cap is
        measured as poll lag.
        """
        metrics = self.ctx.metrics
        async with self.ctx.limiter:
            if due is not None:
                metrics.poll_lag.observe(max(0.0, trio.current_time() - due))
            metrics.call(operation).inc()
            metrics.in_flight.inc()
            try:
                with trio.fail_after(self.connector.call_timeout):
                    return await fn(*args, **(self.kwargs or {}), **kw)
            finally:
                metrics.in_flight.dec()

    # -- create ----------------------------------------------------------------------------

    async def create(self) -> bool:
        """Create the external job (or reconcile a create cut short by a crash).

        Returns False when the create failed (``handle.create_error`` says why).
        """
        if self.resumed and not self.connector.supports_idempotent_create:
            message = (
                f"the supervisor stopped while creating this job and {self.connector.name} "
                "cannot de-duplicate creates: the external job may or may not exist; "
                "not retried to avoid running it twice"
            )
            await self.settle_create_failure(CreateState.ABANDONED, message)
            return False
        await self.await_credentials()
        request, self.request = self.request, None
        if request is None:
            request = pb.CreateTaskRequest.parse(self.record.create_request or b"")
        try:
            meta = await self.external(
                "create",
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
            await self.settle_create_failure(
                CreateState.FAILED, f"{self.connector.name} create failed: {_describe(exc)}"
            )
            return False
        await self.commit(
            "created",
            {"reconciled": self.resumed},
            create_state=CreateState.CREATED,
            resource_meta=self.ctx.seal(
                self.record.task_type, self.record.task_type_version, meta.encode()
            ),
            message="",
        )
        return True

    async def settle_create_failure(self, state: CreateState, message: str) -> None:
        now = self.ctx.wall_clock()
        record = with_phase(self.record, Phase.FAILED, message, now=now)
        await self.commit_record(
            dataclasses.replace(record, create_state=state), "create_failed", {"message": message}
        )
        self.handle.create_error = ConnectorFailed(message)
        self.handle.created.set()

    # -- poll ------------------------------------------------------------------------------

    async def fetch(self, *, due: float) -> Observation | Exception:
        """Poll the external service once: what it reported, or the error it raised."""
        metrics = self.ctx.metrics
        try:
            resource = await self.external("get", self.connector.get, self.meta, due=due)
            seen = self.observer.observe(resource_to_proto(resource, connector=self.connector.name))
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            metrics.polls.inc()
            metrics.poll_errors.inc()
            return exc
        metrics.polls.inc()
        return seen

    async def apply(self, outcome: Observation | BaseException) -> None:
        """Journal and publish what a poll found (nothing when nothing changed)."""
        if isinstance(outcome, Observation):
            self.failures = 0
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
            self.failures += 1
            self.retry_after = _retry_after(outcome)
            error = _describe(outcome)
            message = (
                f"polling {self.connector.name} failed {self.failures} time(s), retrying: {error}"
            )
            _log.warning("job %s: %s", self.handle.job_id, message)
            await self.commit("poll_error", {"error": error}, message=message)

    async def settle(self, phase: Phase, message: str, kind: str) -> None:
        record = with_phase(self.record, phase, message, now=self.ctx.wall_clock())
        await self.commit_record(record, kind, {"message": message})

    # -- cancel ----------------------------------------------------------------------------

    async def time_out(self) -> None:
        await self.commit("timeout", delete_state=DeleteState.REQUESTED)
        await self.cancel()

    async def cancel(self) -> None:
        """Carry out the journalled intent to cancel: exactly one successful external cancel."""
        await self.await_credentials()
        failures = 0
        while True:
            try:
                await self.external("delete", self.connector.delete, self.meta)
                break
            except (trio.Cancelled, KeyboardInterrupt):
                raise
            except JobNotFound:
                break
            except Exception as exc:
                failures += 1
                self.failures = failures
                self.retry_after = _retry_after(exc)
                _log.warning("job %s: cancel failed (%d): %s", self.handle.job_id, failures, exc)
                await trio.sleep(self.delay())
        deadline = self.record.deadline
        if self.timed_out or (deadline is not None and self.ctx.wall_clock() >= deadline):
            phase, message = Phase.FAILED, f"timed out after {self._timeout_text()}: cancelled"
        elif self.cancel_reason:
            phase, message = Phase.ABORTED, f"{self.cancel_reason}: the external job was cancelled"
        else:
            phase, message = Phase.ABORTED, "aborted: the external job was cancelled"
        record = with_phase(self.record, phase, message, now=self.ctx.wall_clock())
        await self.commit_record(
            dataclasses.replace(record, delete_state=DeleteState.DONE),
            "deleted",
            {"phase": phase.name},
        )

    def _timeout_text(self) -> str:
        if self.record.deadline is None:
            return "its timeout"
        return f"{self.record.deadline - self.record.created_at:g}s"


def _credential_keys(record: JobRecord) -> bool:
    """Whether the job was started with connection secrets or configs (kept in memory only).

    Asked of every resumed job before its first call. The official parser (upb, in C) reads
    the journalled request in microseconds where betterproto2 takes a good part of a
    millisecond: at 100,000 resumed jobs that is the difference between seconds and a minute.
    """
    if not record.create_request:
        return False
    connection = connector_pb2.CreateTaskRequest.FromString(record.create_request).connection
    return bool(connection.secrets or connection.configs)


def _retry_after(exc: BaseException) -> float:
    """A transient error's ``retry_after`` (seconds), e.g. from an HTTP Retry-After header."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
