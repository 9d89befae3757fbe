"""Journal faults are outages to wait out (guarantee 5): no job the service created is
abandoned, callers get UNAVAILABLE, health and metrics show the fault.

In process, on Trio's MockClock: a real Supervisor over an InMemoryJournal behind
``FaultyJournal`` (fails every call while the test says so), against a FakeService.
"""

from __future__ import annotations

import errno
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from connectors import ConnectorRegistry, Phase
from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from supervisor import Supervisor, Unavailable
from supervisor.journal import CreateState, DeleteState, InMemoryJournal
from supervisor.observe import Metrics
from tests.support.faulty_journal import FaultyJournal

CATEGORY = pb.TaskCategory(name="fake", version=0)
DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


class _NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def create_request(name: str = "t1") -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="fake"),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(
                task_id=Identifier(project="p", domain="d", name=name)
            )
        ),
    )


class World:
    def __init__(self) -> None:
        self.service = FakeService()
        self.memory = InMemoryJournal()
        self.journal = FaultyJournal(self.memory)
        self.connector = FakeConnector(self.service, poll_interval=10.0)
        self.metrics = Metrics()

    @asynccontextmanager
    async def supervisor(self) -> AsyncIterator[Supervisor]:
        registry = ConnectorRegistry([self.connector])
        sup = Supervisor(
            registry,
            self.journal,
            wall_clock=trio.current_time,
            rng=_NoJitter(),
            metrics=self.metrics,
        )
        async with sup.running():
            yield sup

    def record(self) -> Any:
        [record] = self.memory.jobs.values()
        return record

    def sample(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name)
        assert value is not None
        return value


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(3600):
        while not predicate():  # noqa: ASYNC110 - virtual time: instant under MockClock
            await trio.sleep(0.1)


async def phase_of(sup: Supervisor, meta: bytes) -> Phase:
    response = await sup.get_task(pb.GetTaskRequest(resource_meta=meta, task_category=CATEGORY))
    assert response.resource is not None
    return Phase(response.resource.phase)


async def test_a_created_write_that_fails_is_retried_and_the_job_is_not_abandoned(
    autojump_clock: Any,
) -> None:
    world = World()
    world.service.latency = 1.0
    async with world.supervisor() as sup:
        outcome: list[BaseException] = []

        async def create() -> None:
            try:
                await sup.create_task(create_request())
            except Unavailable as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            await wait_for(lambda: world.service.calls["create"] == 1)
            world.journal.fail(DISK_FULL)  # the external job exists; "created" cannot commit
        [error] = outcome
        assert "journal is unavailable" in str(error)
        assert "No space left on device" in str(error)
        assert sup.journal_fault() is not None  # health: NOT_SERVING
        assert world.sample("supervisor_journal_writes_waiting") == 1
        with pytest.raises(Unavailable, match="journal is unavailable"):
            await sup.create_task(create_request())  # Propeller's retry, still in the outage
        await trio.sleep(10)  # the outage lasts
        assert world.record().create_state == CreateState.PENDING
        world.journal.heal()
        await wait_for(lambda: world.record().create_state == CreateState.CREATED)
        assert sup.journal_fault() is None
        assert world.sample("supervisor_journal_writes_waiting") == 0
        assert world.sample("supervisor_journal_errors_total") >= 3
        response = await sup.create_task(create_request())
        assert response.resource_meta == world.record().resource_meta
        world.service.set_state("job-1", "DONE")
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, response.resource_meta) == Phase.SUCCEEDED
    assert world.service.calls["create"] == 1
    assert "create_failed" not in world.memory.kinds(world.record().job_id)


async def test_a_new_create_during_an_outage_is_unavailable_and_starts_nothing(
    autojump_clock: Any,
) -> None:
    world = World()
    async with world.supervisor() as sup:
        world.journal.fail(DISK_FULL)
        with pytest.raises(Unavailable, match="journal is unavailable"):
            await sup.create_task(create_request())
        with pytest.raises(Unavailable, match="journal is unavailable"):
            await sup.get_task(
                pb.GetTaskRequest(resource_meta=FakeMeta("x").encode(), task_category=CATEGORY)
            )
        world.journal.heal()
        await sup.create_task(create_request())
    assert world.service.calls["create"] == 1


async def test_a_poll_result_is_held_until_the_journal_takes_it(autojump_clock: Any) -> None:
    world = World()
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.journal.fail(DISK_FULL)
        world.service.set_state("job-1", "RUNNING")
        await trio.sleep(30)
        assert await phase_of(sup, meta) == Phase.QUEUED  # only what the journal holds
        polls = world.service.calls["get"]
        await trio.sleep(30)
        assert world.service.calls["get"] == polls  # the actor holds its result, polls no more
        delete = pb.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY)
        with trio.fail_after(0.1), pytest.raises(Unavailable, match="journal is unavailable"):
            await sup.delete_task(delete)  # answered at once, not when the journal is back
        world.journal.heal()
        await wait_for(lambda: world.record().phase == Phase.RUNNING)
        assert await phase_of(sup, meta) == Phase.RUNNING
    assert world.service.calls["delete"] == 0  # the refused delete was not carried out


async def test_a_delete_during_an_outage_is_unavailable_and_the_cancel_happens_once(
    autojump_clock: Any,
) -> None:
    world = World()
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.journal.fail(DISK_FULL)
        delete = pb.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY)
        with pytest.raises(Unavailable, match="journal is unavailable"):
            await sup.delete_task(delete)
        await trio.sleep(20)
        assert world.service.calls["delete"] == 0  # the intent is not journalled yet
        world.journal.heal()
        await wait_for(lambda: world.record().delete_state != DeleteState.NONE)  # held intent
        await sup.delete_task(delete)  # the caller's retry
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.calls["delete"] == 1
    assert world.record().delete_state == DeleteState.DONE
