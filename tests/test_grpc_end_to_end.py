"""End to end: the real server process, driven by the official flyteidl2 grpcio client.

Every RPC and every error code is checked through both grpcio clients, sync
(``grpc.insecure_channel``) and asyncio (``grpc.aio``, run with ``asyncio.run`` from a sync
test: pytest-trio owns async tests). One server, started once for the module, answers the
tests that leave it undisturbed; after each of them the ``client`` fixture checks that it is
still up and answering. Shutdown and startup tests start servers of their own.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import grpc.aio
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import execution_pb2, literals_pb2, security_pb2, tasks_pb2
from flyteidl2.task import common_pb2
from google.protobuf import descriptor_pb2, struct_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpclib.reflection.v1 import reflection_pb2

from supervisor.edge import LIVENESS_SERVICE
from supervisor.wire import payload_of
from tests.support.sample_connectors import BrokenMeta, EchoMeta, KwargsMeta, SlowMeta
from tests.support.server import ServerProcess, wait_for
from tests.support.trust import sealed

pytestmark = pytest.mark.slow

#: The protobuf-runtime messages of the official package are untyped.
Message = Any

SAMPLE_ARGS = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
ASYNC_SERVICE = "flyteidl2.connector.AsyncConnectorService"
METADATA_SERVICE = "flyteidl2.connector.ConnectorMetadataService"
#: Deadline of every call: generous, so that only a hung server trips it.
CALL_TIMEOUT = 10.0
#: How long a server may take to exit once told to.
EXIT_TIMEOUT = 15.0

_SERVICE_OF = {
    "CreateTask": ASYNC_SERVICE,
    "GetTask": ASYNC_SERVICE,
    "DeleteTask": ASYNC_SERVICE,
    "GetTaskMetrics": ASYNC_SERVICE,
    "GetTaskLogs": ASYNC_SERVICE,
    "GetConnector": METADATA_SERVICE,
    "ListConnectors": METADATA_SERVICE,
}


# Clients -------------------------------------------------------------------------------


class RpcFailure(Exception):
    """A call that ended with a status other than OK, from either client."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class Client(Protocol):
    """The official stubs, the same way for the sync and the asyncio client."""

    kind: str

    def call(self, method: str, request: Message) -> Message:
        """A unary call. Errors: RpcFailure."""

    def stream(self, method: str, request: Message) -> list[Message]:
        """A server-streaming call, read to the end. Errors: RpcFailure."""

    def raw(self, method: str, data: bytes) -> bytes:
        """A unary call with request bytes as they are. Errors: RpcFailure."""


def _stubs(channel: Any) -> dict[str, Any]:
    return {
        ASYNC_SERVICE: service_pb2_grpc.AsyncConnectorServiceStub(channel),
        METADATA_SERVICE: service_pb2_grpc.ConnectorMetadataServiceStub(channel),
    }


def _method(channel_stubs: dict[str, Any], method: str) -> Any:
    return getattr(channel_stubs[_SERVICE_OF[method]], method)


class SyncClient:
    kind = "sync"

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._stubs = _stubs(channel)

    def call(self, method: str, request: Message) -> Message:
        try:
            return _method(self._stubs, method)(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            raise RpcFailure(exc.code(), exc.details()) from None

    def stream(self, method: str, request: Message) -> list[Message]:
        try:
            return list(_method(self._stubs, method)(request, timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            raise RpcFailure(exc.code(), exc.details()) from None

    def raw(self, method: str, data: bytes) -> bytes:
        call = self._channel.unary_unary(f"/{_SERVICE_OF[method]}/{method}")
        try:
            response: bytes = call(data, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            raise RpcFailure(exc.code(), exc.details()) from None
        return response


class AioClient:
    """Each call runs in its own ``asyncio.run`` with its own ``grpc.aio`` channel."""

    kind = "aio"

    def __init__(self, address: str) -> None:
        self._address = address

    def call(self, method: str, request: Message) -> Message:
        async def unary(stubs: dict[str, Any], _: Any) -> Message:
            return await _method(stubs, method)(request, timeout=CALL_TIMEOUT)

        return self._run(unary)

    def stream(self, method: str, request: Message) -> list[Message]:
        async def read_all(stubs: dict[str, Any], _: Any) -> list[Message]:
            return [r async for r in _method(stubs, method)(request, timeout=CALL_TIMEOUT)]

        result: list[Message] = self._run(read_all)
        return result

    def raw(self, method: str, data: bytes) -> bytes:
        async def unary(_: dict[str, Any], channel: Any) -> bytes:
            call = channel.unary_unary(f"/{_SERVICE_OF[method]}/{method}")
            response: bytes = await call(data, timeout=CALL_TIMEOUT)
            return response

        result: bytes = self._run(unary)
        return result

    def _run(self, body: Callable[[dict[str, Any], Any], Any]) -> Any:
        async def main() -> Any:
            async with grpc.aio.insecure_channel(self._address) as channel:
                try:
                    return await body(_stubs(channel), channel)
                except grpc.aio.AioRpcError as exc:
                    raise RpcFailure(exc.code(), exc.details()) from None

        return asyncio.run(main())


# Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server: tests that use it must leave it as they found it."""
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path_factory.mktemp("shared-server")) as process:
        process.start()
        yield process


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[Any]:
    with grpc.insecure_channel(server.address) as sync_channel:
        yield sync_channel


@pytest.fixture(params=["sync", "aio"])
def client(request: pytest.FixtureRequest, server: ServerProcess, channel: Any) -> Iterator[Client]:
    """Each client in turn; afterwards the shared server must still be up and answering."""
    chosen: Client = SyncClient(channel) if request.param == "sync" else AioClient(server.address)
    yield chosen
    assert server.running, f"the server died:\n{server.stderr_text()}"
    answer = SyncClient(channel).call("ListConnectors", pb.ListConnectorsRequest())
    assert answer.connectors, "the server stopped answering"


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Make dedicated servers (not started); all are killed at teardown if still running."""
    made: list[ServerProcess] = []

    def make(*args: str, **kwargs: Any) -> ServerProcess:
        process = ServerProcess(list(args), log_dir=tmp_path / f"server-{len(made)}", **kwargs)
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()


# Requests ------------------------------------------------------------------------------


def _int(value: int) -> Message:
    return literals_pb2.Literal(
        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=value))
    )


def _str(value: str) -> Message:
    return literals_pb2.Literal(
        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(string_value=value))
    )


def create_request(task_type: str, *, connection: Message = None, **custom: Any) -> Message:
    template = tasks_pb2.TaskTemplate(type=task_type)
    if custom:
        template.custom.update(custom)
    return pb.CreateTaskRequest(
        template=template,
        inputs=common_pb2.Inputs(
            literals=[
                common_pb2.NamedLiteral(name="n", value=_int(42)),
                common_pb2.NamedLiteral(name="who", value=_str("flyte")),
            ]
        ),
        output_prefix="s3://bucket/prefix",
        connection=connection,
    )


def category(name: str, version: int = 0) -> Message:
    return pb.TaskCategory(name=name, version=version)


ECHO_META = EchoMeta(job_id="echo-2", inputs={"n": 42, "who": "flyte"}, secret_names=[])
PLAIN_META = b'{"job_id": "x"}'


def assert_fails(code: grpc.StatusCode, call: Callable[[], object], *details: str) -> None:
    """``call`` ends with ``code`` and details containing each of ``details``."""
    with pytest.raises(RpcFailure) as failure:
        call()
    assert failure.value.code == code, failure.value.details
    for part in details:
        assert part in failure.value.details


# The seven RPCs ------------------------------------------------------------------------


def test_create_task_returns_the_connectors_encoded_resource_meta(client: Client) -> None:
    response = client.call("CreateTask", create_request("echo"))
    meta = json.loads(response.resource_meta)
    assert (meta["job_id"], meta["inputs"]) == ("echo-2", {"n": 42, "who": "flyte"})


def test_get_task_reports_phase_message_log_links_outputs_and_custom_info(
    client: Client,
) -> None:
    request = pb.GetTaskRequest(
        task_category=category("echo"), resource_meta=sealed("echo", ECHO_META.encode())
    )
    resource = client.call("GetTask", request).resource
    assert resource.phase == execution_pb2.TaskExecution.SUCCEEDED
    assert resource.message == "echoed echo-2"
    assert [(log.name, log.uri) for log in resource.log_links] == [
        ("console", "https://example.com/echo-2")
    ]
    assert {lit.name: lit.value for lit in resource.outputs.literals} == {
        "n": _int(42),
        "who": _str("flyte"),
    }
    expected_info = struct_pb2.Struct()
    expected_info.update({"job_id": "echo-2", "secrets": []})
    assert resource.custom_info == expected_info


def test_delete_task_returns_ok(client: Client) -> None:
    request = pb.DeleteTaskRequest(
        task_category=category("echo"), resource_meta=sealed("echo", ECHO_META.encode())
    )
    assert client.call("DeleteTask", request) == pb.DeleteTaskResponse()


def test_get_task_metrics_returns_the_connectors_results(client: Client) -> None:
    request = pb.GetTaskMetricsRequest(
        task_category=category("echo"),
        resource_meta=sealed("echo", ECHO_META.encode()),
        queries=["cpu"],
    )
    response = client.call("GetTaskMetrics", request)
    assert [result.metric for result in response.results] == ["CPU_USAGE"]


def test_get_task_logs_streams_a_header_then_a_body(client: Client) -> None:
    request = pb.GetTaskLogsRequest(
        task_category=category("echo"), resource_meta=sealed("echo", ECHO_META.encode()), lines=10
    )
    header, body = client.stream("GetTaskLogs", request)
    assert header.WhichOneof("part") == "header"
    assert header.header.token == "next-page"
    assert body.WhichOneof("part") == "body"
    [line] = body.body.lines
    assert line.message == "hello from echo-2"
    assert line.timestamp.ToJsonString() == "2026-01-02T03:04:05Z"


def test_get_connector_returns_its_task_categories(client: Client) -> None:
    response = client.call("GetConnector", pb.GetConnectorRequest(name="Echo connector"))
    assert response.connector == pb.Connector(
        name="Echo connector", supported_task_categories=[category("echo")]
    )


def test_list_connectors_lists_every_connector_by_name(client: Client) -> None:
    response = client.call("ListConnectors", pb.ListConnectorsRequest())
    assert [
        (c.name, [t.name for t in c.supported_task_categories]) for c in response.connectors
    ] == [
        ("Broken connector", ["broken"]),
        ("Echo connector", ["echo"]),
        ("Kwargs connector", ["kwargs"]),
        ("Plain connector", ["plain"]),
        ("Slow connector", ["slow"]),
    ]


def test_secrets_and_configs_reach_create_as_keyword_arguments(client: Client) -> None:
    connection = security_pb2.Connection(
        secrets={"api_key": "s3cret"}, configs={"region": "eu-west-1"}
    )
    response = client.call("CreateTask", create_request("kwargs", connection=connection))
    received = json.loads(response.resource_meta)["create_kwargs"]
    assert {"api_key": "s3cret", "region": "eu-west-1"}.items() <= received.items()


def test_secrets_reach_get_as_keyword_arguments(client: Client) -> None:
    request = pb.GetTaskRequest(
        task_category=category("kwargs"),
        resource_meta=sealed("kwargs", KwargsMeta(create_kwargs={"client": client.kind}).encode()),
        connection=security_pb2.Connection(secrets={"token": "t0k3n"}),
    )
    resource = client.call("GetTask", request).resource
    assert resource.custom_info["get_kwargs"] == struct_pb2.Struct(
        fields={"token": struct_pb2.Value(string_value="t0k3n")}
    )


# Error codes; the client fixture checks the server survives each ------------------------


def test_unknown_task_type_is_not_found(client: Client) -> None:
    assert_fails(
        grpc.StatusCode.NOT_FOUND,
        lambda: client.call("CreateTask", create_request("nope")),
        "no connector for task type 'nope' version 0",
    )


def test_unknown_task_category_is_not_found(client: Client) -> None:
    request = pb.GetTaskRequest(task_category=category("echo", 7), resource_meta=b"{}")
    assert_fails(
        grpc.StatusCode.NOT_FOUND,
        lambda: client.call("GetTask", request),
        "no connector for task type 'echo' version 7",
    )


def test_unknown_connector_name_is_not_found(client: Client) -> None:
    assert_fails(
        grpc.StatusCode.NOT_FOUND,
        lambda: client.call("GetConnector", pb.GetConnectorRequest(name="Nope connector")),
        "no connector named 'Nope connector'",
    )


def test_garbage_resource_meta_is_invalid_argument(client: Client) -> None:
    request = pb.GetTaskRequest(
        task_category=category("echo"), resource_meta=sealed("echo", b"\xffgarbage")
    )
    assert_fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: client.call("GetTask", request),
        "resource_meta for Echo connector: resource_meta is not JSON",
    )


def test_resource_meta_with_a_missing_field_is_invalid_argument(client: Client) -> None:
    request = pb.DeleteTaskRequest(
        task_category=category("echo"), resource_meta=sealed("echo", b'{"inputs":{}}')
    )
    assert_fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: client.call("DeleteTask", request),
        "missing field(s) for EchoMeta: job_id, secret_names",
    )


def test_missing_task_category_is_invalid_argument(client: Client) -> None:
    request = pb.GetTaskRequest(resource_meta=sealed("echo", ECHO_META.encode()))
    assert_fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: client.call("GetTask", request),
        "task_category is required",
    )


def test_missing_template_is_invalid_argument(client: Client) -> None:
    request = pb.CreateTaskRequest(output_prefix="s3://bucket/prefix")
    assert_fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: client.call("CreateTask", request),
        "template with a task type is required",
    )


#: Field 2 (resource_meta, length-delimited) whose length varint is missing.
UNPARSEABLE_GET_TASK = b"\x12"


def test_unparseable_request_bytes_are_invalid_argument(client: Client) -> None:
    with pytest.raises(DecodeError):
        pb.GetTaskRequest.FromString(UNPARSEABLE_GET_TASK)  # the bytes really are malformed
    assert_fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: client.raw("GetTask", UNPARSEABLE_GET_TASK),
        "malformed GetTaskRequest",
    )


def test_truncated_field_value_is_invalid_argument(client: Client) -> None:
    # A valid task_category, then resource_meta claiming 3 bytes more than there are.
    meta = ECHO_META.encode()
    assert len(meta) + 3 < 128  # a one-byte length varint
    truncated = (
        pb.GetTaskRequest(task_category=category("echo")).SerializeToString()
        + bytes([0x12, len(meta) + 3])
        + meta
    )
    with pytest.raises(DecodeError):
        pb.GetTaskRequest.FromString(truncated)
    assert_fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: client.raw("GetTask", truncated),
        "malformed GetTaskRequest",
    )


def test_create_that_raises_is_internal_with_the_connectors_message(client: Client) -> None:
    assert_fails(
        grpc.StatusCode.INTERNAL,
        lambda: client.call("CreateTask", create_request("broken")),
        "Broken connector create failed",
        "boom: the external service refused the job",
    )


def test_metrics_that_raise_are_internal_with_the_connectors_message(client: Client) -> None:
    request = pb.GetTaskMetricsRequest(
        task_category=category("broken"), resource_meta=sealed("broken", PLAIN_META)
    )
    assert_fails(
        grpc.StatusCode.INTERNAL,
        lambda: client.call("GetTaskMetrics", request),
        "Broken connector get_metrics failed",
        "boom: no metrics today",
    )


def test_get_of_a_job_whose_polls_fail_is_running_with_the_error_in_its_message(
    client: Client,
) -> None:
    """GetTask answers from the job's actor, which retries a failing poll: no error code."""
    meta = sealed("broken", BrokenMeta(job_id=f"poll-{client.kind}").encode())
    request = pb.GetTaskRequest(task_category=category("broken"), resource_meta=meta)
    resource = client.call("GetTask", request).resource
    assert resource.phase == execution_pb2.TaskExecution.RUNNING
    assert "boom: status unavailable" in resource.message


def test_delete_returns_ok_even_when_the_connectors_cancel_fails(client: Client) -> None:
    """The intent to cancel is journalled and retried by the job's actor."""
    meta = sealed("broken", BrokenMeta(job_id=f"delete-{client.kind}").encode())
    request = pb.DeleteTaskRequest(task_category=category("broken"), resource_meta=meta)
    assert client.call("DeleteTask", request) == pb.DeleteTaskResponse()


def test_metrics_a_connector_does_not_provide_are_unimplemented(client: Client) -> None:
    request = pb.GetTaskMetricsRequest(
        task_category=category("plain"), resource_meta=sealed("plain", PLAIN_META)
    )
    assert_fails(
        grpc.StatusCode.UNIMPLEMENTED,
        lambda: client.call("GetTaskMetrics", request),
        "Plain connector does not provide metrics",
    )


def test_logs_a_connector_does_not_provide_are_unimplemented(client: Client) -> None:
    request = pb.GetTaskLogsRequest(
        task_category=category("plain"), resource_meta=sealed("plain", PLAIN_META)
    )
    assert_fails(
        grpc.StatusCode.UNIMPLEMENTED,
        lambda: client.stream("GetTaskLogs", request),
        "Plain connector does not provide logs",
    )


# Health, reflection, startup output ----------------------------------------------------


@pytest.mark.parametrize("service", ["", ASYNC_SERVICE, METADATA_SERVICE, LIVENESS_SERVICE])
def test_health_reports_serving(channel: Any, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_service_is_not_found(channel: Any) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=CALL_TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


#: Server reflection, both versions: their messages are the same on the wire. The messages
#: come from grpclib's copy of reflection.proto (grpcio-reflection's generated modules
#: refuse to load with an older protobuf runtime); the client is grpcio.
REFLECTION_PATHS = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]


def reflect(
    channel: Any, path: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One ServerReflectionInfo exchange: send one request, return its one response."""
    exchange = channel.stream_stream(
        path,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    [response] = list(exchange(iter([request]), timeout=CALL_TIMEOUT))
    assert isinstance(response, reflection_pb2.ServerReflectionResponse)
    return response


@pytest.mark.parametrize("path", REFLECTION_PATHS, ids=["v1", "v1alpha"])
def test_reflection_lists_both_connector_services(channel: Any, path: str) -> None:
    response = reflect(channel, path, reflection_pb2.ServerReflectionRequest(list_services=""))
    services = {service.name for service in response.list_services_response.service}
    assert {ASYNC_SERVICE, METADATA_SERVICE} <= services


@pytest.mark.parametrize("path", REFLECTION_PATHS, ids=["v1", "v1alpha"])
def test_reflection_resolves_the_file_containing_the_async_connector_service(
    channel: Any, path: str
) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=ASYNC_SERVICE)
    response = reflect(channel, path, request)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in response.file_descriptor_response.file_descriptor_proto
    ]
    [service_file] = [f for f in files if f.name == "flyteidl2/connector/service.proto"]
    [service] = [s for s in service_file.service if s.name == "AsyncConnectorService"]
    assert [m.name for m in service.method] == [
        "CreateTask",
        "GetTask",
        "DeleteTask",
        "GetTaskMetrics",
        "GetTaskLogs",
    ]
    assert [m.server_streaming for m in service.method] == [False, False, False, False, True]


@pytest.mark.parametrize("path", REFLECTION_PATHS, ids=["v1", "v1alpha"])
def test_reflection_of_an_unknown_symbol_is_an_error_response(channel: Any, path: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Service")
    response = reflect(channel, path, request)
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_startup_prints_the_connectors_served(server: ServerProcess) -> None:
    assert "connector 'Echo connector': task type echo v0" in server.stdout_text()


# Shutdown and startup: dedicated servers -----------------------------------------------


def test_sigterm_exits_zero_and_prints_stopped(
    new_server: Callable[..., ServerProcess],
) -> None:
    process = new_server(*SAMPLE_ARGS).start()
    process.send_signal(signal.SIGTERM)
    assert process.wait(EXIT_TIMEOUT) == 0
    assert process.stdout_text().endswith("stopped\n")


def test_sigint_exits_zero(new_server: Callable[..., ServerProcess]) -> None:
    process = new_server(*SAMPLE_ARGS).start()
    process.send_signal(signal.SIGINT)
    assert process.wait(EXIT_TIMEOUT) == 0
    assert process.stdout_text().endswith("stopped\n")


def start_slow_create(channel: Any, started: Path, release: Path) -> Any:
    """Send a CreateTask that blocks in the slow connector; return once it is in there."""
    stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
    request = create_request("slow", started_path=str(started), release_path=str(release))
    future = stub.CreateTask.future(request, timeout=CALL_TIMEOUT * 3)
    wait_for("the slow create to start", started.exists, timeout=CALL_TIMEOUT)
    return future


@dataclass
class InFlight:
    """A CreateTask blocked in the slow connector of a server that got SIGTERM meanwhile."""

    process: ServerProcess
    channel: Any
    future: Any
    release_path: Path

    def release(self) -> None:
        self.release_path.touch()


@pytest.fixture
def in_flight_at_sigterm(
    new_server: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[InFlight]:
    process = new_server(*SAMPLE_ARGS, "--grace", "30").start()
    release = tmp_path / "release"
    with grpc.insecure_channel(process.address) as channel:
        future = start_slow_create(channel, tmp_path / "started", release)
        process.send_signal(signal.SIGTERM)
        wait_for(
            "the server to take the signal",
            lambda: "received SIGTERM" in process.stderr_text(),
            timeout=CALL_TIMEOUT,
        )
        in_flight = InFlight(process, channel, future, release)
        try:
            yield in_flight
        finally:
            in_flight.release()


def test_call_in_flight_at_sigterm_completes(in_flight_at_sigterm: InFlight) -> None:
    assert in_flight_at_sigterm.process.running  # draining: waiting for the call
    in_flight_at_sigterm.release()
    response = in_flight_at_sigterm.future.result()
    meta = SlowMeta.decode(payload_of(response.resource_meta))
    assert meta.release_path == str(in_flight_at_sigterm.release_path)


def test_server_exits_zero_once_the_call_in_flight_at_sigterm_is_done(
    in_flight_at_sigterm: InFlight,
) -> None:
    in_flight_at_sigterm.release()
    in_flight_at_sigterm.future.result()
    assert in_flight_at_sigterm.process.wait(EXIT_TIMEOUT) == 0
    assert in_flight_at_sigterm.process.stdout_text().endswith("stopped\n")


def test_new_call_while_draining_is_unavailable(in_flight_at_sigterm: InFlight) -> None:
    stub = service_pb2_grpc.ConnectorMetadataServiceStub(in_flight_at_sigterm.channel)
    with pytest.raises(grpc.RpcError) as failure:
        stub.ListConnectors(pb.ListConnectorsRequest(), timeout=CALL_TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not in_flight_at_sigterm.future.done()


def test_new_connection_while_draining_is_refused(in_flight_at_sigterm: InFlight) -> None:
    # grpcio would share the open connection between channels: force a new one.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(in_flight_at_sigterm.process.address, options) as channel:
        stub = service_pb2_grpc.ConnectorMetadataServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.ListConnectors(pb.ListConnectorsRequest(), timeout=CALL_TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_health_reports_not_serving_while_draining(in_flight_at_sigterm: InFlight) -> None:
    health = health_pb2_grpc.HealthStub(in_flight_at_sigterm.channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT)
    assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
    # Liveness: the process still answers while it drains.
    request = health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE)
    response = health.Check(request, timeout=CALL_TIMEOUT)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_call_still_running_after_the_grace_period_is_cut_off(
    new_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    process = new_server(*SAMPLE_ARGS, "--grace", "0.2").start()
    with grpc.insecure_channel(process.address) as channel:
        future = start_slow_create(channel, tmp_path / "started", tmp_path / "never")
        process.send_signal(signal.SIGTERM)
        assert process.wait(EXIT_TIMEOUT) == 0
        assert future.exception(timeout=CALL_TIMEOUT).code() == grpc.StatusCode.UNAVAILABLE
    assert "1 call(s) still running after 0.2s grace" in process.stderr_text()


def test_missing_module_exits_non_zero_with_a_clear_error(
    new_server: Callable[..., ServerProcess],
) -> None:
    process = new_server("--entry-points", "false", "--modules", "no_such_module_for_tests")
    process.spawn()
    assert process.wait(EXIT_TIMEOUT) != 0
    assert (
        "error: cannot load connectors: ModuleNotFoundError: "
        "No module named 'no_such_module_for_tests'"
    ) in process.stderr_text()
    assert "serving on" not in process.stdout_text()


def test_settings_come_from_environment_variables(
    new_server: Callable[..., ServerProcess],
) -> None:
    environment = {
        "SUPERVISOR_HOST": "127.0.0.1",
        "SUPERVISOR_PORT": "0",
        "SUPERVISOR_MODULES": "tests.support.sample_connectors",
        "SUPERVISOR_ENTRY_POINTS": "false",
    }
    process = new_server(env=environment, host=None, port=None).start()
    with grpc.insecure_channel(process.address) as channel:
        response = SyncClient(channel).call(
            "GetConnector", pb.GetConnectorRequest(name="Echo connector")
        )
    assert response.connector.name == "Echo connector"
    assert process.stdout_text().startswith("connector 'Broken connector'")


def test_flags_win_over_environment_variables(
    new_server: Callable[..., ServerProcess],
) -> None:
    environment = {"SUPERVISOR_MODULES": "no_such_module_for_tests", "SUPERVISOR_PORT": "1"}
    process = new_server(*SAMPLE_ARGS, env=environment).start()  # --port 0 and --modules
    with grpc.insecure_channel(process.address) as channel:
        response = SyncClient(channel).call("ListConnectors", pb.ListConnectorsRequest())
    assert len(response.connectors) == 5


def test_a_killed_server_starts_again_with_its_journal(
    new_server: Callable[..., ServerProcess],
) -> None:
    process = new_server(*SAMPLE_ARGS).start()
    process.kill()
    assert process.returncode == -signal.SIGKILL
    process.start()
    with grpc.insecure_channel(process.address) as channel:
        SyncClient(channel).call("ListConnectors", pb.ListConnectorsRequest())
    assert process.runs == 2
    assert f"journal {process.journal_url}" in process.stdout_text()
