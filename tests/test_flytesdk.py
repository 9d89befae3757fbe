"""Unmodified flyte-sdk connectors hosted by the supervisor (``connectors.flytesdk``).

``tests.support.flytesdk_sample.SleepConnector`` is a flyte-sdk connector as a plugin author writes
it (asyncio, official protobufs); the supervisor runs it through the adapter on a
trio-asyncio loop, with real time (asyncio's clock), so durations are kept short.
"""

from __future__ import annotations

import io
import json
import signal
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio

from connectors import ConnectorRegistry, Phase, literal_to_native, run_local
from connectors._imports import plain_asyncio_loops
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Connection,
    Identifier,
    TaskExecutionIdentifier,
    TaskTemplate,
)
from flyteproto.google.protobuf import Struct
from supervisor import InvalidArgument, Supervisor
from supervisor.journal import InMemoryJournal
from supervisor.wire import payload_of

# flyte-sdk's import warns (pydantic class-based config): nothing to do with us.
with warnings.catch_warnings(), plain_asyncio_loops():
    warnings.filterwarnings("ignore", message="Support for class-based `config` is deprecated")
    pytest.importorskip("flyte.connectors")
    from flyte.connectors import ConnectorRegistry as SdkRegistry
    from flyteidl2.connector import connector_pb2, service_pb2_grpc
    from flyteidl2.core import tasks_pb2

    from connectors.flytesdk import (
        FlyteSdkConnector,
        FlyteSdkMeta,
        NoAsyncioLoop,
        load,
        registered,
    )
    from tests.support import flytesdk_sample as sample

#: Poll interval of the adapted connector: the sample job runs on asyncio's (real) clock.
POLL = 0.02
CATEGORY = pb.TaskCategory(name=sample.TASK_TYPE, version=0)


def adapted() -> FlyteSdkConnector:
    return FlyteSdkConnector(SdkRegistry.get_connector(sample.TASK_TYPE), poll_interval=POLL)


def create_request(
    name: str,
    *,
    seconds: float = 0.0,
    state: str | None = None,
    secrets: dict[str, str] | None = None,
) -> pb.CreateTaskRequest:
    custom: dict[str, Any] = {"seconds": seconds}
    if state is not None:
        custom["state"] = state
    return pb.CreateTaskRequest(
        template=TaskTemplate(type=sample.TASK_TYPE, custom=Struct.from_dict(custom)),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(
                task_id=Identifier(project="p", domain="d", name=name)
            )
        ),
        connection=Connection(secrets=secrets) if secrets else None,
    )


def get_request(meta: bytes) -> pb.GetTaskRequest:
    return pb.GetTaskRequest(resource_meta=meta, task_category=CATEGORY)


@asynccontextmanager
async def supervisor(*, adopt_unsigned: bool = False) -> AsyncIterator[Supervisor]:
    registry = ConnectorRegistry([adapted()])
    async with (
        trio_asyncio.open_loop(),
        Supervisor(registry, InMemoryJournal(), adopt_unsigned=adopt_unsigned).running() as sup,
    ):
        yield sup


async def wait_for_phase(sup: Supervisor, meta: bytes, phase: Phase) -> pb.Resource:
    with trio.fail_after(10):
        while True:
            resource = (await sup.get_task(get_request(meta))).resource
            assert resource is not None
            if resource.phase == phase:
                return resource
            await trio.sleep(POLL / 2)


def calls_for(job_id: str, operation: str) -> list[dict[str, Any]]:
    return [
        seen
        for op, seen in sample.SERVICE.seen
        if op == operation
        and (seen.get("resource_meta") is None or seen["resource_meta"].job_id == job_id)
    ]


# -- the adapter ------------------------------------------------------------------------


def test_adapter_mirrors_the_wrapped_connector() -> None:
    connector = adapted()
    assert isinstance(connector, FlyteSdkConnector)
    assert (connector.name, connector.task_type_name, connector.task_type_version) == (
        "flyte-sdk sleep connector",
        sample.TASK_TYPE,
        0,
    )
    assert issubclass(connector.metadata_type, FlyteSdkMeta)
    assert type(adapted()) is type(connector)  # one class per wrapped connector
    assert connector.supports_idempotent_create is False


async def test_resource_meta_bytes_are_flyte_sdks_own() -> None:
    async with supervisor() as sup:
        response = await sup.create_task(create_request("bytes"))
    payload = payload_of(response.resource_meta)  # inside our MAC's envelope
    meta = json.loads(payload)
    # Exactly what flyte-sdk's ResourceMeta.encode gives (key order and spacing included).
    assert payload == json.dumps(asdict(sample.SleepMetadata(**meta))).encode()


async def test_job_runs_to_success_with_outputs_links_and_custom_info() -> None:
    async with supervisor() as sup:
        meta = (await sup.create_task(create_request("success", seconds=0.1))).resource_meta
        resource = await wait_for_phase(sup, meta, Phase.SUCCEEDED)
    job_id = json.loads(meta)["job_id"]
    assert resource.message == "done"
    assert [(link.name, link.uri) for link in resource.log_links] == [
        ("Sleep console", f"https://sleep.example/{job_id}")
    ]
    assert resource.outputs is not None
    outputs = {
        named.name: literal_to_native(named.value)
        for named in resource.outputs.literals
        if named.value is not None
    }
    assert outputs == {"slept": 0.1, "job": job_id}
    assert resource.custom_info is not None
    assert resource.custom_info.to_dict() == {"job_id": job_id}


async def test_wrapped_connector_gets_official_protobufs_and_connection_kwargs() -> None:
    async with supervisor() as sup:
        request = create_request("kwargs", secrets={"api_token": "s3cret"})
        meta = (await sup.create_task(request)).resource_meta
        await wait_for_phase(sup, meta, Phase.SUCCEEDED)
    job_id = json.loads(meta)["job_id"]
    [create] = [seen for op, seen in sample.SERVICE.seen if op == "create"][-1:]
    assert isinstance(create["task_template"], tasks_pb2.TaskTemplate)
    assert request.template is not None
    assert create["task_template"].SerializeToString() == bytes(request.template)
    assert isinstance(create["task_execution_metadata"], connector_pb2.TaskExecutionMetadata)
    assert create["task_execution_metadata"].task_execution_id.task_id.name == "kwargs"
    assert create["output_prefix"] == "s3://bucket/out"
    assert create["inputs"] == {}
    assert create["api_token"] == "s3cret"
    assert "idempotency_key" not in create  # flyte-sdk's API has none
    gets = calls_for(job_id, "get")
    assert gets
    assert all(get["api_token"] == "s3cret" for get in gets)
    assert isinstance(gets[0]["resource_meta"], sample.SleepMetadata)


async def test_delete_storm_cancels_the_external_job_once() -> None:
    async with supervisor() as sup:
        meta = (await sup.create_task(create_request("storm", seconds=60))).resource_meta
        await wait_for_phase(sup, meta, Phase.RUNNING)
        delete = pb.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY)
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(sup.delete_task, delete)
        resource = await wait_for_phase(sup, meta, Phase.ABORTED)
    assert len(calls_for(json.loads(meta)["job_id"], "delete")) == 1
    assert "cancelled" in resource.message


async def test_resource_meta_from_flyte_sdks_own_service_is_adopted() -> None:
    # A job created by flyte-sdk's connector service: Propeller switched services (and the
    # operator allows unsigned metas for the switch).
    connector = SdkRegistry.get_connector(sample.TASK_TYPE)
    async with supervisor(adopt_unsigned=True) as sup:
        made = await trio_asyncio.aio_as_trio(connector.create)(
            task_template=tasks_pb2.TaskTemplate(), output_prefix="", inputs={}
        )
        meta = made.encode()
        resource = await wait_for_phase(sup, meta, Phase.SUCCEEDED)
    assert resource.message == "done"


async def test_unknown_external_state_reports_running_and_keeps_polling() -> None:
    async with supervisor() as sup:
        meta = (await sup.create_task(create_request("odd", state="QUEUED"))).resource_meta
        with trio.fail_after(10):
            # The sample service has no event to wait on: watch its call log.
            while len(calls_for(json.loads(meta)["job_id"], "get")) < 3:  # noqa: ASYNC110
                await trio.sleep(POLL)
        resource = await wait_for_phase(sup, meta, Phase.RUNNING)
    assert "unknown" in resource.message
    assert "queued" in resource.message.lower()


async def test_resource_meta_the_wrapped_type_refuses_is_invalid() -> None:
    async with supervisor(adopt_unsigned=True) as sup:
        with pytest.raises(InvalidArgument, match="SleepMetadata"):
            await sup.get_task(get_request(b'{"nope": 1}'))


async def test_metrics_are_converted_to_our_messages() -> None:
    async with supervisor() as sup:
        meta = (await sup.create_task(create_request("metrics"))).resource_meta
        response = await sup.get_task_metrics(
            pb.GetTaskMetricsRequest(resource_meta=meta, task_category=CATEGORY)
        )
    assert isinstance(response, pb.GetTaskMetricsResponse)


async def test_logs_stream_is_converted_to_our_messages() -> None:
    async with supervisor() as sup:
        meta = (await sup.create_task(create_request("logs"))).resource_meta
        request = pb.GetTaskLogsRequest(resource_meta=meta, task_category=CATEGORY)
        responses = [response async for response in sup.get_task_logs(request)]
    job_id = json.loads(meta)["job_id"]
    assert all(isinstance(response, pb.GetTaskLogsResponse) for response in responses)
    assert [r.header.token for r in responses if r.header is not None] == [
        f"{job_id}/page-1",
        f"{job_id}/page-2",
    ]


async def test_call_outside_an_asyncio_loop_says_how_to_fix_it() -> None:
    connector = adapted()
    with pytest.raises(NoAsyncioLoop, match=r"trio_asyncio\.open_loop"):
        await connector.create(TaskTemplate(type=sample.TASK_TYPE), "")


async def test_flytesdk_connector_runs_locally() -> None:
    template = TaskTemplate(type=sample.TASK_TYPE, custom=Struct.from_dict({"seconds": 0.05}))
    out = io.StringIO()
    async with trio_asyncio.open_loop():
        resource = await run_local(adapted(), template, output=out, poll_interval=POLL)
    assert resource.phase == Phase.SUCCEEDED
    lines = out.getvalue().splitlines()
    job_id = json.loads(lines[0].split(" job ", 1)[1])["job_id"]
    assert lines[-1] == f'outputs: {{"job": "{job_id}", "slept": 0.05}}'


# -- public surface ---------------------------------------------------------------------


def test_public_names_of_connectors_flytesdk() -> None:
    import connectors.flytesdk as package

    assert sorted(package.__all__) == [
        "FlyteSdkConnector",
        "FlyteSdkMeta",
        "NoAsyncioLoop",
        "adapters_in",
        "load",
        "registered",
    ]
    for name in package.__all__:
        assert getattr(package, name).__module__.startswith("connectors.flytesdk.")


def test_registered_adapts_everything_flyte_sdk_has_registered() -> None:
    wrapped = {id(connector.wrapped) for connector in registered()}
    assert id(SdkRegistry.get_connector(sample.TASK_TYPE)) in wrapped


# -- loading ----------------------------------------------------------------------------


def test_load_adapts_the_connectors_a_module_registers() -> None:
    [connector] = load("tests.support.flytesdk_sample")
    assert connector.wrapped is SdkRegistry.get_connector(sample.TASK_TYPE)


def test_modules_option_loads_a_flytesdk_module() -> None:
    registry = ConnectorRegistry()
    registry.load_module("tests.support.flytesdk_sample")
    registry.load_module("tests.support.flytesdk_sample")  # again: no duplicate
    connector = registry.get(sample.TASK_TYPE, 0)
    assert isinstance(connector, FlyteSdkConnector)
    assert [info.name for info in registry.list_metadata()] == ["flyte-sdk sleep connector"]


def test_flyteplugins_bigquery_connector_loads_through_the_adapter() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Support for class-based `config`")
        bigquery = pytest.importorskip("flyteplugins.bigquery.connector")
    [connector] = load(bigquery)
    assert (connector.name, connector.task_type_name, connector.task_type_version) == (
        "Bigquery Connector",
        "bigquery_query_job_task",
        0,
    )
    made = bigquery.BigQueryMetadata(job_id="j1", project="p", location="US", user_agent="ua")
    meta = connector.metadata_type.decode(made.encode())
    assert meta.encode() == made.encode()
    assert meta.wrapped == made


# -- the real server --------------------------------------------------------------------


@pytest.mark.slow
def test_real_server_serves_a_flytesdk_module(tmp_path: Path) -> None:
    import grpc

    from tests.support.server import ServerProcess

    args = ["--entry-points", "false", "--modules", "tests.support.flytesdk_sample"]
    with ServerProcess(args, log_dir=tmp_path) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            stub: Any = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            category = connector_pb2.TaskCategory(name=sample.TASK_TYPE, version=0)
            template = tasks_pb2.TaskTemplate(type=sample.TASK_TYPE)
            template.custom.update({"seconds": 60})
            created = stub.CreateTask(
                connector_pb2.CreateTaskRequest(template=template, output_prefix="/tmp/out"),
                timeout=10,
            )
            payload = payload_of(created.resource_meta)
            assert payload == json.dumps(json.loads(payload)).encode()  # flyte-sdk's encoding
            get = connector_pb2.GetTaskRequest(
                resource_meta=created.resource_meta, task_category=category
            )

            def phase() -> Phase:
                return Phase(stub.GetTask(get, timeout=10).resource.phase)

            assert phase() == Phase.QUEUED  # first poll after the 10 s default interval
            delete = connector_pb2.DeleteTaskRequest(
                resource_meta=created.resource_meta, task_category=category
            )
            stub.DeleteTask(delete, timeout=10)
            wait_until(lambda: phase() == Phase.ABORTED)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    from tests.support.server import wait_for

    wait_for("the job's phase", check, timeout=timeout)


def test_the_secrets_a_wrapped_create_requires_are_the_adapters() -> None:
    class NeedsKey(sample.SleepConnector):
        task_type_name = "needs_key"

        async def create(  # type: ignore[override]
            self, task_template: Any, output_prefix: str, *, snowflake_key: str, **kwargs: Any
        ) -> Any:
            raise NotImplementedError

    assert FlyteSdkConnector(NeedsKey()).required_connection_keys() == {"snowflake_key"}
    assert adapted().required_connection_keys() == frozenset()
