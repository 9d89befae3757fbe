"""The gRPC edge in process: grpclib's in-memory channel to our Edge inside trio-asyncio.

These pin down GetTask's fast path (``ConnectorService.answer_now``): a live job is
answered on the asyncio side without a Trio task, with the same bytes, the same credential
hand-off, draining and metrics as the full path. And the server's write batching: bytes
written in one loop iteration go out in one write, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import trio
import trio_asyncio
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

from connectors import ConnectorRegistry, Phase
from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2 import connector as pb
from supervisor import Supervisor
from supervisor.edge import BatchingTransport, Codec, Edge
from supervisor.journal import InMemoryJournal
from supervisor.observe import Metrics
from tests.test_supervisor import create_request, get_request

_T = TypeVar("_T")

GET_TASK = "/flyteidl2.connector.AsyncConnectorService/GetTask"
CREATE_TASK = "/flyteidl2.connector.AsyncConnectorService/CreateTask"
#: Real time here (asyncio runs inside): long enough for a poll, short for a test.
POLL_INTERVAL = 0.05
WAIT = 10.0


class CountingSupervisor(Supervisor):
    """A Supervisor whose full GetTask path can be blocked, and counts its calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.full_path_calls = 0
        self.full_path_blocked = False

    async def get_task(self, request: pb.GetTaskRequest) -> pb.GetTaskResponse:
        self.full_path_calls += 1
        if self.full_path_blocked:
            await trio.sleep_forever()
        return await super().get_task(request)


class World:
    def __init__(self) -> None:
        self.service = FakeService()
        self.journal = InMemoryJournal()
        self.connector = FakeConnector(self.service, poll_interval=POLL_INTERVAL)
        self.metrics = Metrics()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[tuple[CountingSupervisor, Edge, Client]]:
        registry = ConnectorRegistry([self.connector])
        sup = CountingSupervisor(registry, self.journal)
        async with trio_asyncio.open_loop(), sup.running():
            edge = Edge(sup, self.metrics)
            channel_for = ChannelFor([edge.async_service()], codec=Codec())
            channel = await trio_asyncio.aio_as_trio(channel_for.__aenter__)()
            try:
                yield sup, edge, Client(channel)
            finally:
                await trio_asyncio.aio_as_trio(channel_for.__aexit__)(None, None, None)


class Client:
    def __init__(self, channel: Channel) -> None:
        self._get = UnaryUnaryMethod(channel, GET_TASK, pb.GetTaskRequest, pb.GetTaskResponse)
        self._create = UnaryUnaryMethod(
            channel, CREATE_TASK, pb.CreateTaskRequest, pb.CreateTaskResponse
        )

    async def create_task(self, request: pb.CreateTaskRequest | bytes) -> pb.CreateTaskResponse:
        return await _aio(self._create)(request)  # bytes: sent as they are (``Codec``)

    async def get_task(self, request: pb.GetTaskRequest) -> pb.GetTaskResponse:
        return await _aio(self._get)(request)


def _aio(fn: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
    return trio_asyncio.aio_as_trio(fn)  # type: ignore[no-any-return]


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT):
        while not predicate():  # noqa: ASYNC110 - the actors run on their own schedule
            await trio.sleep(0.01)


async def message_of(client: Client, meta: bytes) -> str:
    response = await client.get_task(get_request(meta))
    assert response.resource is not None
    return response.resource.message


def phase(response: pb.GetTaskResponse) -> Phase:
    assert response.resource is not None
    return Phase(response.resource.phase)


async def test_get_task_of_a_live_job_is_answered_while_the_trio_side_is_blocked() -> None:
    world = World()
    async with world.serving() as (sup, _, client):
        meta = (await sup.create_task(create_request())).resource_meta
        sup.full_path_blocked = True
        with trio.fail_after(WAIT):
            response = await client.get_task(get_request(meta))
        assert phase(response) == Phase.QUEUED
        assert sup.full_path_calls == 0
        with trio.move_on_after(0.2):
            await client.get_task(get_request(FakeMeta(job_id="unknown").encode()))
        assert sup.full_path_calls == 1  # a job it does not hold takes the full path


async def test_get_task_answers_the_same_as_the_full_path_and_follows_the_phase() -> None:
    world = World()
    async with world.serving() as (sup, _, client):
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "RUNNING")
        await wait_for(lambda: world.service.calls["get"] > 0)
        fast = await client.get_task(get_request(meta))
        assert fast == await sup.get_task(get_request(meta))
        assert phase(fast) == Phase.RUNNING
        world.service.set_state("job-1", "DONE")
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        calls = sup.full_path_calls
        assert phase(await client.get_task(get_request(meta))) == Phase.SUCCEEDED
        assert sup.full_path_calls == calls + 1  # a finished job is read from the journal


async def test_get_task_hands_new_credentials_to_a_job_waiting_for_them() -> None:
    world = World()
    async with world.serving() as (sup, _, _client):
        meta = (await sup.create_task(create_request(secrets={"token": "abc"}))).resource_meta
    async with world.serving() as (sup, _, client):
        with trio.fail_after(WAIT):
            while "waiting for credentials" not in await message_of(client, meta):  # noqa: ASYNC110
                await trio.sleep(0.01)
        polls = world.service.calls["get"]
        await client.get_task(get_request(meta, secrets={"token": "abc"}))
        await wait_for(lambda: world.service.calls["get"] > polls)
        assert sup.full_path_calls == 0
    assert world.connector.seen_kwargs[-1]["token"] == "abc"


async def test_a_create_without_a_connection_is_journalled_as_received() -> None:
    world = World()
    # A field sent twice (the last one wins) shows the bytes are the ones sent: an encoding
    # of the parsed request would hold it once.
    sent = bytes(create_request()) + bytes(pb.CreateTaskRequest(output_prefix="s3://b/o"))
    async with world.serving() as (_, _, client):
        await client.create_task(sent)
    (record,) = world.journal.jobs.values()
    assert record.create_request == sent


async def test_a_create_with_a_connection_is_journalled_without_its_values() -> None:
    world = World()
    async with world.serving() as (_, _, client):
        await client.create_task(create_request(secrets={"token": "s3cr3t-value"}))
    (record,) = world.journal.jobs.values()
    assert record.create_request is not None
    assert b"s3cr3t-value" not in record.create_request
    journalled = pb.CreateTaskRequest.parse(record.create_request)
    assert journalled.connection is not None
    assert journalled.connection.secrets == {"token": ""}


async def test_get_task_of_a_live_job_is_unavailable_while_draining() -> None:
    world = World()
    async with world.serving() as (sup, edge, client):
        meta = (await sup.create_task(create_request())).resource_meta
        edge.drain()
        with pytest.raises(GRPCError) as failure:
            await client.get_task(get_request(meta))
    assert failure.value.status == Status.UNAVAILABLE
    assert sup.full_path_calls == 0


async def test_get_task_answered_on_the_fast_path_is_measured() -> None:
    world = World()
    async with world.serving() as (sup, _, client):
        meta = (await sup.create_task(create_request())).resource_meta
        for _ in range(3):
            await client.get_task(get_request(meta))
        assert sup.full_path_calls == 0
    registry = world.metrics.registry
    labels = {"task_type": "fake", "operation": "get"}
    assert registry.get_sample_value("flyte_connector_requests_success_total", labels) == 3
    assert registry.get_sample_value("flyte_connector_request_latency_seconds_count", labels) == 3


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_writes_of_one_loop_iteration_go_out_in_one_write_in_order() -> None:
    inner = RecordingTransport()
    transport = BatchingTransport(inner)

    async def write_twice() -> None:
        transport.write(b"headers")
        transport.write(b"")
        transport.write(b"message")
        transport.write(b"trailers")
        assert inner.writes == []
        await asyncio.sleep(0)
        assert inner.writes == [b"headersmessagetrailers"]
        transport.write(b"next")
        await asyncio.sleep(0)

    async with trio_asyncio.open_loop():
        await _aio(write_twice)()
    assert inner.writes == [b"headersmessagetrailers", b"next"]


async def test_closing_the_batching_transport_sends_what_is_pending_first() -> None:
    inner = RecordingTransport()
    transport = BatchingTransport(inner)

    async def write_and_close() -> None:
        transport.write(b"trailers")
        transport.close()

    async with trio_asyncio.open_loop():
        await _aio(write_and_close)()
    assert inner.writes == [b"trailers"]
    assert inner.closed
