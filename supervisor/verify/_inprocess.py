"""``verify_recovery``: the recovery schedule in-process, on Trio's clock, against a connector.

A real ``Supervisor`` over an ``InMemoryJournal`` (each commit takes ``commit_latency``)
runs the author's connector; the driver calls it as Flyte's executor does (CreateTask
re-sent after any error, GetTask on a cadence, DeleteTask on a share of the jobs, retried
until OK). A crash cancels the supervisor (its actors die where they are, as in a kill -9:
the journal keeps only what was committed) and a new one starts on the same journal after
``downtime``. Crash points: ``crash`` at the planned moment; ``crash-after-create`` and
``crash-after-cancel`` at the first moment after it when the connector's create (cancel)
has returned and its journal write is not yet committed: the windows where a crash makes
a duplicate. The connector is wrapped to count its calls per task execution (external jobs
made = distinct resource_metas its create returned).

Run it under ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock``): hours
of schedule take milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from connectors import AsyncConnector, ConnectorRegistry, Phase, Resource, ResourceMeta, is_terminal
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Identifier,
    NodeExecutionIdentifier,
    TaskExecutionIdentifier,
    TaskTemplate,
    WorkflowExecutionIdentifier,
)

from .._errors import ServiceError
from ..journal import JOURNAL_WRITES, InMemoryJournal, JournalCall, JournalProxy
from ..service import Supervisor
from ._plan import Plan, make_plan
from ._report import External, FaultOutcome, JobOutcome, Report

__all__ = ["IN_PROCESS_FAULTS", "RecoveryViolation", "verify_recovery"]

IN_PROCESS_FAULTS = ("crash", "crash-after-create", "crash-after-cancel")


class RecoveryViolation(AssertionError):
    """A guarantee broke: ``report`` says which, for which jobs."""

    def __init__(self, report: Report) -> None:
        super().__init__("recovery verification failed:\n" + report.render())
        self.report = report


class _Crashed(BaseException):
    """A write on the journal of a supervisor that crashed: it never commits.

    A BaseException, so that nothing in the supervisor retries it; the supervisor's nursery
    ends with it, as a killed process ends.
    """


class _CrashableJournal(JournalProxy):
    """One supervisor's view of the shared InMemoryJournal; its commits take ``latency``.

    After ``crash()`` nothing it is asked to write commits (shielded writes included: a
    kill -9 does not wait for them).
    """

    def __init__(self, inner: InMemoryJournal, latency: float) -> None:
        super().__init__(inner)
        self.latency = latency
        self.alive = True

    def crash(self) -> None:
        self.alive = False

    async def before(self, call: JournalCall) -> None:
        if call in JOURNAL_WRITES:
            await trio.sleep(self.latency)
        if not self.alive:
            raise _Crashed


@dataclass
class _Calls:
    """The connector's calls for one task execution."""

    creates: int = 0
    metas: set[bytes] = field(default_factory=set)
    cancels: int = 0
    gets: int = 0
    ends_at: float | None = None
    first: Any = None  # the first ResourceMeta create returned


class _Counting(AsyncConnector[Any]):
    """The author's connector, counting its calls; tells the crasher when a call returned."""

    def __init__(self, inner: AsyncConnector[Any], on_return: Callable[[str], None]) -> None:
        self.inner = inner
        self.on_return = on_return
        self.name = inner.name  # type: ignore[misc]
        self.task_type_name = inner.task_type_name  # type: ignore[misc]
        self.task_type_version = inner.task_type_version  # type: ignore[misc]
        self.metadata_type = inner.metadata_type  # type: ignore[misc]
        self.supports_idempotent_create = inner.supports_idempotent_create
        self.poll_interval = inner.poll_interval
        self.max_concurrent_calls = inner.max_concurrent_calls
        self.call_timeout = inner.call_timeout
        self.calls: dict[str, _Calls] = {}
        self.by_meta: dict[bytes, str] = {}

    def _of(self, execution: str) -> _Calls:
        return self.calls.setdefault(execution, _Calls())

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: pb.TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> ResourceMeta:
        name = _name_of(task_execution_metadata)
        self._of(name).creates += 1
        meta: ResourceMeta = await self.inner.create(
            task_template, output_prefix, inputs, task_execution_metadata, **kwargs
        )
        calls = self._of(name)
        calls.metas.add(meta.encode())
        if calls.first is None:
            calls.first = meta
        self.by_meta[meta.encode()] = name
        self.on_return("create")
        return meta

    async def get(self, resource_meta: Any, **kwargs: Any) -> Resource:
        self._of(self.by_meta.get(resource_meta.encode(), "")).gets += 1
        return await self.inner.get(resource_meta, **kwargs)

    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        await self.inner.delete(resource_meta, **kwargs)
        self._of(self.by_meta.get(resource_meta.encode(), "")).cancels += 1
        self.on_return("cancel")


def _name_of(metadata: pb.TaskExecutionMetadata | None) -> str:
    execution = metadata.task_execution_id if metadata is not None else None
    if execution is None or execution.task_id is None:
        return ""
    return execution.task_id.name


class _InProcess:
    def __init__(
        self,
        connector: AsyncConnector[Any],
        plan: Plan,
        *,
        template: TaskTemplate,
        end_job: Callable[[Any], object] | None,
        poll_interval: float,
        downtime: float,
        commit_latency: float,
        settle_timeout: float,
    ) -> None:
        self.plan = plan
        self.counting = _Counting(connector, self._returned)
        self.registry = ConnectorRegistry([self.counting])
        self.journal = InMemoryJournal()
        self.commit_latency = commit_latency
        self.view: _CrashableJournal | None = None
        self.template = template
        self.end_job = end_job
        self.poll_interval = poll_interval
        self.downtime = downtime
        self.supervisor: Supervisor | None = None
        self.scope: trio.CancelScope | None = None
        self.armed: str | None = None  # "create"/"cancel": crash when such a call returns
        self.crashed = trio.Event()
        self.t0 = trio.current_time()
        self.give_up_at = self.t0 + plan.duration + settle_timeout
        self.outcomes = [
            JobOutcome(name=f"job-{p.index}", delete_planned=p.delete_at is not None)
            for p in plan.jobs
        ]
        self.faults: list[FaultOutcome] = []
        self.pending: set[int] = set()
        self.rng = random.Random(plan.seed)
        self.nursery: trio.Nursery | None = None
        self.recovered = trio.Event()
        self.probe: pb.CreateTaskRequest | None = None
        self.probe_meta: bytes | None = None
        self.probe_resends = 0
        self.probe_changes = 0

    def now(self) -> float:
        return trio.current_time() - self.t0

    def _returned(self, call: str) -> None:
        if self.armed == call and self.scope is not None:
            self.armed = None
            self._crash()

    def _crash(self) -> None:
        assert self.scope is not None
        assert self.view is not None
        self.view.crash()
        self.scope.cancel()
        self.supervisor = None
        self.crashed.set()

    async def serve(self) -> None:
        """Run supervisors one after another: each until it crashes, then restart."""
        while True:
            self.crashed = trio.Event()
            self.view = _CrashableJournal(self.journal, self.commit_latency)
            with trio.CancelScope() as scope:
                self.scope = scope
                try:
                    async with Supervisor(
                        self.registry, self.view, wall_clock=trio.current_time, rng=self.rng
                    ).running() as supervisor:
                        self.supervisor = supervisor
                        await trio.sleep_forever()
                except* _Crashed:
                    pass
            await trio.sleep(self.downtime)

    def _sup(self) -> Supervisor:
        if self.supervisor is None:
            raise ServiceError("down")
        return self.supervisor

    async def job(self, index: int) -> None:
        planned, outcome = self.plan.jobs[index], self.outcomes[index]
        await trio.sleep_until(self.t0 + planned.create_at)
        request = pb.CreateTaskRequest(
            template=self.template,
            output_prefix=f"memory://verify/{outcome.name}",
            task_execution_metadata=pb.TaskExecutionMetadata(
                task_execution_id=TaskExecutionIdentifier(
                    task_id=Identifier(name=outcome.name),
                    node_execution_id=NodeExecutionIdentifier(
                        node_id="n0", execution_id=WorkflowExecutionIdentifier(name="verify")
                    ),
                )
            ),
        )
        meta = None
        while meta is None:
            if trio.current_time() > self.give_up_at:
                outcome.lost = "CreateTask never answered OK"
                return
            try:
                meta = (await self._sup().create_task(request)).resource_meta
            except (ServiceError, _Crashed):
                await trio.sleep(1.0)
        outcome.created, outcome.metas = True, 1
        if self.probe is None:
            self.probe, self.probe_meta = request, meta
        if self.end_job is not None:
            # The connector's own ResourceMeta (what we answer may carry a MAC besides).
            calls = self.counting.calls.setdefault(outcome.name, _Calls())
            calls.ends_at = trio.current_time() + planned.seconds
            self._end_later(calls.first, planned.seconds)
        category = pb.TaskCategory(name=self.template.type, version=self.template.task_type_version)
        while True:
            if trio.current_time() > self.give_up_at:
                outcome.lost = f"still {outcome.phase} when the run gave up"
                return
            due = planned.delete_at is not None and self.now() >= planned.delete_at
            if due and outcome.delete_ok_at is None:
                try:
                    await self._sup().delete_task(
                        pb.DeleteTaskRequest(task_category=category, resource_meta=meta)
                    )
                    outcome.delete_ok_at = self.now()
                except (ServiceError, _Crashed):
                    pass
            sent = self.now()
            try:
                answer = await self._sup().get_task(
                    pb.GetTaskRequest(task_category=category, resource_meta=meta)
                )
            except (ServiceError, _Crashed):
                pass
            else:
                phase = Phase(answer.resource.phase) if answer.resource else Phase.UNDEFINED
                outcome.phase = phase.name
                self._polled(index, sent)
                if is_terminal(phase):
                    outcome.ended = True
                    return
            await trio.sleep(self.poll_interval)

    def _end_later(self, meta: Any, seconds: float) -> None:
        assert self.end_job is not None
        assert self.nursery is not None
        end_job = self.end_job

        async def later() -> None:
            await trio.sleep(seconds)
            end_job(meta)

        self.nursery.start_soon(later)

    def _polled(self, index: int, sent: float) -> None:
        if not self.faults:
            return
        fault = self.faults[-1]
        if sent < fault.at:
            return
        if fault.first_ok is None:
            fault.first_ok = self.now() - fault.at
        self.pending.discard(index)
        if not self.pending and fault.all_polled is None:
            fault.all_polled = self.now() - fault.at
            self.recovered.set()

    async def faults_task(self) -> None:
        for planned in self.plan.faults:
            await trio.sleep_until(self.t0 + planned.at)
            if planned.kind != "crash":
                self.armed = "create" if planned.kind == "crash-after-create" else "cancel"
                with trio.move_on_after(self.plan.duration):
                    await self.crashed.wait()
                self.armed = None
            elif self.supervisor is not None:
                self._crash()
            live = {i for i, o in enumerate(self.outcomes) if o.created and not o.ended}
            self.faults.append(
                FaultOutcome(planned.index, planned.kind, self.now(), live=len(live))
            )
            self.pending = live
            self.recovered = trio.Event()
            if live:
                with trio.move_on_after(self.plan.duration):
                    await self.recovered.wait()
            await self.resend_probe()

    async def resend_probe(self) -> None:
        """Re-send the first job's CreateTask: the same resource_meta as the first time?"""
        if self.probe is None:
            return
        try:
            meta = (await self._sup().create_task(self.probe)).resource_meta
        except (ServiceError, _Crashed):
            return
        self.probe_resends += 1
        if meta != self.probe_meta:
            self.probe_changes += 1

    def report(self) -> Report:
        external = {}
        for outcome in self.outcomes:
            calls = self.counting.calls.get(outcome.name, _Calls())
            external[outcome.name] = External(
                jobs=len(calls.metas),
                creates=calls.creates,
                cancels=calls.cancels,
                gets=calls.gets,
                ends_at=calls.ends_at,
            )
        return Report(
            seed=self.plan.seed,
            schedule=self.plan.describe(),
            jobs=self.outcomes,
            faults=self.faults,
            external=external if self.end_job is not None else None,
            probe_resends=self.probe_resends,
            probe_changes=self.probe_changes,
            started_at=self.t0,
        )

    async def run(self) -> Report:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self.serve)
            async with trio.open_nursery() as work:
                for index in range(len(self.plan.jobs)):
                    work.start_soon(self.job, index)
                work.start_soon(self.faults_task)
            nursery.cancel_scope.cancel()
        return self.report()


async def verify_recovery(
    connector: AsyncConnector[Any],
    *,
    end_job: Callable[[Any], object] | None = None,
    template: TaskTemplate | None = None,
    jobs: int = 50,
    faults: int = 6,
    kinds: tuple[str, ...] = IN_PROCESS_FAULTS,
    duration: float = 600.0,
    job_seconds: float = 120.0,
    delete_share: float = 0.3,
    seed: int = 0,
    poll_interval: float = 30.0,
    downtime: float = 5.0,
    commit_latency: float = 0.005,
    settle_timeout: float = 3600.0,
) -> Report:
    """Run the schedule against ``connector``; return the report when every guarantee held.

    ``end_job(meta)`` is called when a job's planned run time is over: make the fake of
    your service finish that job (without it, jobs must end by themselves and the report
    cannot count external calls). ``template`` is the TaskTemplate every job is created with
    (default: the connector's task type, nothing else). Times are seconds of Trio's clock.

    Errors: RecoveryViolation (an AssertionError) with the report when a guarantee broke.
    """
    plan = make_plan(
        seed,
        jobs=jobs,
        faults=faults,
        duration=duration,
        job_seconds=job_seconds,
        delete_share=delete_share,
        kinds=kinds,
        allowed=IN_PROCESS_FAULTS,
    )
    if template is None:
        template = TaskTemplate(
            type=connector.task_type_name, task_type_version=connector.task_type_version
        )
    report = await _InProcess(
        connector,
        plan,
        template=template,
        end_job=end_job,
        poll_interval=poll_interval,
        downtime=downtime,
        commit_latency=commit_latency,
        settle_timeout=settle_timeout,
    ).run()
    if not report.ok:
        raise RecoveryViolation(report)
    return report
