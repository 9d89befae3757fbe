"""Superseded attempts: a CreateTask for attempt N+1 cancels attempt N's job when the executor
never learnt of it (its CreateTask answer was lost), and nothing else. On virtual time."""

from __future__ import annotations

import trio
import trio.testing

from connectors import ConnectorRegistry, Phase
from connectors.testing import FakeConnector, FakeService
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from supervisor import InMemoryJournal, Supervisor
from supervisor.journal import DeleteState
from supervisor.wire import job_id_for

CATEGORY = pb.TaskCategory(name="fake", version=0)


def metadata(name: str, attempt: int) -> pb.TaskExecutionMetadata:
    return pb.TaskExecutionMetadata(
        task_execution_id=TaskExecutionIdentifier(
            task_id=Identifier(project="p", domain="d", name=name), retry_attempt=attempt
        )
    )


def create(name: str, attempt: int) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="fake"), task_execution_metadata=metadata(name, attempt)
    )


def job_id(name: str, attempt: int) -> str:
    return job_id_for("fake", 0, metadata(name, attempt))


def running(service: FakeService) -> list[str]:
    return sorted(j.job_id for j in service.jobs.values() if j.state in ("PENDING", "RUNNING"))


async def test_attempt_1_cancels_the_unseen_job_of_attempt_0_once(autojump_clock: object) -> None:
    service, journal = FakeService(), InMemoryJournal()
    registry = ConnectorRegistry([FakeConnector(service)])
    async with Supervisor(registry, journal, wall_clock=trio.current_time).running() as sup:
        await sup.create_task(create("t", 0))  # its answer is "lost": no GetTask ever names it
        second = await sup.create_task(create("t", 1))
        await sup.create_task(create("t", 1))  # a repeat: no second cancel
        await trio.sleep(1)
        assert service.calls["delete"] == 1
        assert running(service) == ["job-2"]  # one external job left running, not two
        lost = await journal.get(job_id("t", 0))
        assert lost is not None
        assert (Phase(lost.phase), lost.delete_state) == (Phase.ABORTED, DeleteState.DONE)
        assert lost.message == "superseded by attempt 1: the external job was cancelled"
        answer = await sup.get_task(
            pb.GetTaskRequest(resource_meta=second.resource_meta, task_category=CATEGORY)
        )
        assert answer.resource is not None
        assert Phase(answer.resource.phase) != Phase.ABORTED


async def test_an_attempt_seen_by_get_task_is_left_to_the_executor(autojump_clock: object) -> None:
    service = FakeService()
    registry = ConnectorRegistry([FakeConnector(service)])
    async with Supervisor(
        registry, InMemoryJournal(), wall_clock=trio.current_time
    ).running() as sup:
        first = await sup.create_task(create("t", 0))
        await sup.get_task(
            pb.GetTaskRequest(resource_meta=first.resource_meta, task_category=CATEGORY)
        )
        await sup.create_task(create("t", 1))
        await trio.sleep(1)
    assert service.calls["delete"] == 0
    assert running(service) == ["job-1", "job-2"]


async def test_another_task_executions_job_is_never_cancelled(autojump_clock: object) -> None:
    service = FakeService()
    registry = ConnectorRegistry([FakeConnector(service)])
    async with Supervisor(
        registry, InMemoryJournal(), wall_clock=trio.current_time
    ).running() as sup:
        await sup.create_task(create("a", 0))
        await sup.create_task(create("b", 1))  # attempt 1 of another task execution
        await sup.create_task(create("a", 0))  # the same attempt again: nothing superseded
        await trio.sleep(1)
    assert service.calls["delete"] == 0
    assert running(service) == ["job-1", "job-2"]


async def test_a_create_still_in_flight_is_cancelled_once_it_lands(autojump_clock: object) -> None:
    service, journal = FakeService(latency=5.0), InMemoryJournal()
    registry = ConnectorRegistry([FakeConnector(service)])
    async with Supervisor(registry, journal, wall_clock=trio.current_time).running() as sup:
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(1):  # the client's deadline expires before the answer
                await sup.create_task(create("t", 0))
            nursery.start_soon(sup.create_task, create("t", 1))
        await trio.sleep(20)
    assert service.calls["create"] == 2
    assert service.calls["delete"] == 1
    assert len(running(service)) == 1
    lost = await journal.get(job_id("t", 0))
    assert lost is not None
    assert lost.delete_state == DeleteState.DONE
