"""End to end: the real Supervisor runs Databricks jobs against the fake workspace.

CreateTask / GetTask / DeleteTask go through ``supervisor.Supervisor`` with an
InMemoryJournal; the connector talks HTTP to ``tests/support/fake_databricks.py``. The clock is
real (sockets are), so the connector polls every 50 ms and waits have deadlines.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from connectors import ConnectorRegistry, Phase
from connectors.databricks import DatabricksConnector
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Connection,
    Identifier,
    TaskExecutionIdentifier,
)
from supervisor import Supervisor
from supervisor.journal import InMemoryJournal
from tests.support.fake_databricks import FakeDatabricks, databricks_template

CATEGORY = pb.TaskCategory(name="databricks", version=0)
POLL = 0.05
#: Seconds a test waits for something that takes a few polls.
WAIT_LIMIT = 10.0


class _NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeDatabricks:
    service = FakeDatabricks()
    await nursery.start(service.serve)
    return service


@asynccontextmanager
async def running(journal: InMemoryJournal) -> AsyncIterator[Supervisor]:
    connector = DatabricksConnector(poll_interval=POLL, request_timeout=5.0, call_timeout=10.0)
    sup = Supervisor(ConnectorRegistry([connector]), journal, rng=_NoJitter())
    async with sup.running():
        yield sup


def connection(fake: FakeDatabricks) -> Connection:
    return Connection(secrets={"databricks_token": fake.token})


def create_request(fake: FakeDatabricks) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        template=databricks_template(fake.url),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(
                task_id=Identifier(project="p", domain="d", name="wf.spark_task"),
                retry_attempt=0,
            )
        ),
        connection=connection(fake),
    )


async def resource(sup: Supervisor, fake: FakeDatabricks, meta: bytes) -> pb.Resource:
    answer = await sup.get_task(
        pb.GetTaskRequest(resource_meta=meta, task_category=CATEGORY, connection=connection(fake))
    )
    assert answer.resource is not None
    return answer.resource


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it holds. Errors: TooSlowError after WAIT_LIMIT seconds."""
    with trio.fail_after(WAIT_LIMIT):
        while not predicate():  # noqa: ASYNC110 - the fake changes state from another task
            await trio.sleep(0.01)


async def wait_for_phase(
    sup: Supervisor, fake: FakeDatabricks, meta: bytes, phase: Phase
) -> pb.Resource:
    """GetTask until the job reports ``phase``. Errors: TooSlowError after WAIT_LIMIT."""
    with trio.fail_after(WAIT_LIMIT):
        while (answer := await resource(sup, fake, meta)).phase != phase:  # noqa: ASYNC110
            await trio.sleep(0.01)
    return answer


async def test_429s_are_retried_by_the_supervisor_until_the_run_succeeds(
    fake: FakeDatabricks,
) -> None:
    journal = InMemoryJournal()
    async with running(journal) as sup:
        meta = (await sup.create_task(create_request(fake))).resource_meta
        again = (await sup.create_task(create_request(fake))).resource_meta
        assert meta == again
        run = fake.only_run()
        assert run.request["idempotency_token"] == next(iter(journal.jobs))

        fake.set_state(run.run_id, "RUNNING")
        fake.fail_next("get", 429, retry_after="0")
        fake.fail_next("get", 429, retry_after="0")
        await wait_for(lambda: [r.status for r in fake.requests][-3:] == [429, 429, 200])
        fake.set_state(run.run_id, "TERMINATED", "SUCCESS", "")

        done = await wait_for_phase(sup, fake, meta, Phase.SUCCEEDED)

    assert done.message == "TERMINATED (SUCCESS)"
    assert [link.name for link in done.log_links] == ["Databricks Console"]
    assert len(fake.runs) == 1
    assert fake.calls["submit"] == 1  # the second CreateTask was answered from the journal
    kinds = [event.kind for event in journal.history]
    assert kinds.count("poll_error") == 2
    errors = [json.loads(e.detail)["error"] for e in journal.history if e.kind == "poll_error"]
    assert all("HTTP 429 REQUEST_LIMIT_EXCEEDED" in error for error in errors)
    stored = repr(journal.jobs) + repr(journal.history)
    assert fake.token not in stored  # secrets live in memory only


async def test_delete_task_cancels_the_run_once(fake: FakeDatabricks) -> None:
    journal = InMemoryJournal()
    async with running(journal) as sup:
        meta = (await sup.create_task(create_request(fake))).resource_meta
        fake.set_state(fake.only_run().run_id, "RUNNING")
        delete = pb.DeleteTaskRequest(
            resource_meta=meta, task_category=CATEGORY, connection=connection(fake)
        )
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(sup.delete_task, delete)
        await wait_for(lambda: fake.only_run().cancel_requests == 1)
        await wait_for_phase(sup, fake, meta, Phase.ABORTED)
        await sup.delete_task(delete)
    assert fake.only_run().cancel_requests == 1
    assert fake.only_run().life_cycle_state == "TERMINATING"
