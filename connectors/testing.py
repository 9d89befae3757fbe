"""A fake external service and a connector for it: for tests of connectors and supervisors.

``FakeService`` keeps jobs in memory and counts every call; its fault hooks make the next
call of an operation fail (``fail_next``), hang until cancelled (``hang_next``), or forget
a job (``lose``). ``latency`` makes every call take that long (on Trio's clock, so MockClock
tests stay instant). ``FakeConnector`` serves task type ``fake`` against one.

The crash test that runs a connector under a real supervisor is the supervisor's:
``supervisor.verify.verify_recovery``. The SDK imports nothing of the supervisor.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

from ._connector import AsyncConnector
from ._errors import JobNotFound
from ._phase import Phase, StateMap
from ._registry import ConnectorRegistry, swap_default
from ._resource import Resource, ResourceMeta, TaskLog

__all__ = [
    "FakeConnector",
    "FakeJob",
    "FakeMeta",
    "FakeService",
    "isolated_default_registry",
]


@contextmanager
def isolated_default_registry() -> Iterator[ConnectorRegistry]:
    """Within: a fresh, empty default registry (what ``ConnectorRegistry.register`` fills);
    the previous one is back afterwards. For tests of modules that register on import."""
    previous = swap_default(ConnectorRegistry())
    try:
        yield ConnectorRegistry.default()
    finally:
        swap_default(previous)


STATES = StateMap(
    {
        "PENDING": Phase.QUEUED,
        "RUNNING": Phase.RUNNING,
        "DONE": Phase.SUCCEEDED,
        "ERROR": Phase.FAILED,
        "CANCELLED": Phase.ABORTED,
    },
    service="fake service",
)


@dataclass
class FakeJob:
    job_id: str
    key: str | None
    inputs: dict[str, Any]
    state: str = "PENDING"
    outputs: dict[str, Any] | None = None
    cancels: int = 0


@dataclass
class FakeService:
    """An external service in memory, with call counts and fault hooks."""

    latency: float = 0.0
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    _faults: dict[str, list[BaseException | None]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, operation: str, error: BaseException | None = None) -> None:
        """The next ``operation`` call ("create", "get", "delete") raises ``error``."""
        self._faults.setdefault(operation, []).append(
            error or RuntimeError(f"injected {operation} failure")
        )

    def hang_next(self, operation: str) -> None:
        """The next ``operation`` call blocks until it is cancelled."""
        self._faults.setdefault(operation, []).append(None)

    def lose(self, job_id: str) -> None:
        """Forget a job, as a service that expired or never had it."""
        del self.jobs[job_id]

    def set_state(self, job_id: str, state: str, outputs: dict[str, Any] | None = None) -> None:
        job = self.jobs[job_id]
        job.state = state
        job.outputs = outputs

    async def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(self.latency)
            faults = self._faults.get(operation)
            if faults:
                fault = faults.pop(0)
                if fault is None:
                    await trio.sleep_forever()
                raise fault
        except BaseException:
            self.in_flight -= 1
            raise

    def _leave(self) -> None:
        self.in_flight -= 1

    async def create(self, key: str | None, inputs: dict[str, Any]) -> FakeJob:
        await self._enter("create")
        try:
            for job in self.jobs.values():
                if key is not None and job.key == key:
                    return job
            job = FakeJob(job_id=f"job-{next(self._ids)}", key=key, inputs=dict(inputs))
            self.jobs[job.job_id] = job
            return job
        finally:
            self._leave()

    async def get(self, job_id: str) -> FakeJob:
        await self._enter("get")
        try:
            if job_id not in self.jobs:
                raise JobNotFound(job_id)
            return self.jobs[job_id]
        finally:
            self._leave()

    async def cancel(self, job_id: str) -> None:
        await self._enter("delete")
        try:
            if job_id not in self.jobs:
                raise JobNotFound(job_id)
            job = self.jobs[job_id]
            job.cancels += 1
            if job.state in ("PENDING", "RUNNING"):
                job.state = "CANCELLED"
        finally:
            self._leave()


@dataclass
class FakeMeta(ResourceMeta):
    job_id: str


class FakeConnector(AsyncConnector[FakeMeta]):
    """Task type ``fake``: jobs on a FakeService. ``idempotent`` honours idempotency keys."""

    name = "Fake connector"
    task_type_name = "fake"
    task_type_version = 0
    metadata_type = FakeMeta

    def __init__(
        self,
        service: FakeService,
        *,
        poll_interval: float = 10.0,
        max_concurrent_calls: int = 64,
        call_timeout: float = 60.0,
        idempotent: bool = True,
    ) -> None:
        self.service = service
        self.poll_interval = poll_interval
        self.max_concurrent_calls = max_concurrent_calls
        self.call_timeout = call_timeout
        self.supports_idempotent_create = idempotent
        self.seen_kwargs: list[dict[str, Any]] = []

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> FakeMeta:
        self.seen_kwargs.append(dict(kwargs))
        key = kwargs.get("idempotency_key") if self.supports_idempotent_create else None
        job = await self.service.create(key, inputs or {})
        return FakeMeta(job_id=job.job_id)

    async def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:
        self.seen_kwargs.append(dict(kwargs))
        job = await self.service.get(resource_meta.job_id)
        phase, message = STATES.phase(job.state)
        return Resource(
            phase=phase,
            message=message or job.state.lower(),
            log_links=[TaskLog(name="fake console", uri=f"https://fake.example/{job.job_id}")],
            outputs=job.outputs if phase == Phase.SUCCEEDED else None,
        )

    async def delete(self, resource_meta: FakeMeta, **kwargs: Any) -> None:
        self.seen_kwargs.append(dict(kwargs))
        await self.service.cancel(resource_meta.job_id)
