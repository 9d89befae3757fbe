"""Secrets from every request: a create that needs a secret the request lacks is refused
with INVALID_ARGUMENT naming it; every GetTask and DeleteTask refreshes the credentials of a
resumed job (they live in memory only). On virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from connectors import ConnectorRegistry
from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import Connection, Identifier, TaskExecutionIdentifier, TaskTemplate
from supervisor import InMemoryJournal, InvalidArgument, Supervisor
from supervisor.journal import DeleteState

CATEGORY = pb.TaskCategory(name="fake", version=0)


class NeedsToken(FakeConnector):
    name = "Needs-token connector"

    async def create(  # type: ignore[override]  # a required secret: narrower on purpose
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: pb.TaskExecutionMetadata | None = None,
        *,
        api_token: str,
        region: str,
        **kwargs: Any,
    ) -> FakeMeta:
        return await super().create(task_template, output_prefix, inputs, **kwargs)


def create(connection: Connection | None = None) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="fake"),
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(task_id=Identifier(name="t"))
        ),
        connection=connection,
    )


async def test_a_missing_secret_is_invalid_argument_naming_it(autojump_clock: object) -> None:
    service, journal = FakeService(), InMemoryJournal()
    registry = ConnectorRegistry([NeedsToken(service)])
    async with Supervisor(registry, journal).running() as sup:
        with pytest.raises(InvalidArgument) as error:
            await sup.create_task(create(Connection(configs={"region": "eu"})))
        assert str(error.value) == (
            "missing connection.secrets key 'api_token': Needs-token connector's create requires it"
        )
        with pytest.raises(InvalidArgument, match=r"keys 'api_token', 'region': .* them"):
            await sup.create_task(create())
        assert await journal.unfinished() == []  # refused before anything was journalled
        meta = await sup.create_task(create(Connection(secrets={"api_token": "t", "region": "eu"})))
        assert meta.resource_meta
    assert service.calls["create"] == 1


async def test_a_delete_brings_the_credentials_a_resumed_cancel_waits_for(
    autojump_clock: object,
) -> None:
    service, journal = FakeService(), InMemoryJournal()
    registry = ConnectorRegistry([FakeConnector(service)])
    connection = Connection(secrets={"token": "s3cret"})
    async with Supervisor(registry, journal, wall_clock=trio.current_time).running() as sup:
        meta = (await sup.create_task(create(connection))).resource_meta
        service.hang_next("delete")  # the cancel is under way when we stop
        delete = pb.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY)
        await sup.delete_task(delete)
        await trio.sleep(1)
    [job] = service.jobs.values()
    assert job.state == "PENDING"
    async with Supervisor(registry, journal, wall_clock=trio.current_time).running() as again:
        await trio.sleep(60)  # resumed: the cancel waits for the secrets we never keep
        [record] = await journal.unfinished()
        assert record.delete_state == DeleteState.REQUESTED
        assert record.message.startswith("waiting for credentials")
        delete.connection = connection  # the executor sends the connection again
        await again.delete_task(delete)
        await trio.sleep(60)
    assert job.state == "CANCELLED"
    assert await journal.unfinished() == []
