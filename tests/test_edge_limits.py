"""Requests that must not hurt the server or other clients, against a real ``serve`` process.

Oversized and long-echoing requests get a bounded status message and leave the loop free for
everyone else; client mistakes (wrong wire types, deeply nested JSON, HTTP/2 framing
mistakes) get a precise INVALID_ARGUMENT (UNIMPLEMENTED for compression), never INTERNAL,
and never a traceback in the server's log. The framing cases speak raw HTTP/2 (``h2``).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import h2.connection
import h2.events
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import tasks_pb2

from supervisor.edge import MAX_MESSAGE_CHARS
from tests.support.server import ServerProcess

SAMPLE_ARGS = [
    "--entry-points",
    "false",
    "--modules",
    "tests.support.sample_connectors",
    "--idle-timeout",
    "1",
]
#: Deadlines generous enough to trip only on a server frozen for a long time.
CALL_TIMEOUT = 60.0
CREATE = "/flyteidl2.connector.AsyncConnectorService/CreateTask"
GET = "/flyteidl2.connector.AsyncConnectorService/GetTask"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path_factory.mktemp("limits")) as process:
        process.start()
        yield process
        assert "Traceback" not in process.stderr_text(), process.stderr_text()


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(server.address, options=options) as made:
        yield made


def failure(call: Any, *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, timeout=CALL_TIMEOUT)
    return raised.value


def create_of_task_type(task_type: str) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(template=tasks_pb2.TaskTemplate(type=task_type))


def assert_still_answers(channel: grpc.Channel) -> None:
    stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
    request = pb.GetTaskRequest(task_category=pb.TaskCategory(name="nope"), resource_meta=b"{}")
    error = failure(stub.GetTask, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_a_request_over_the_size_limit_is_refused_and_others_are_answered_meanwhile(
    channel: grpc.Channel,
) -> None:
    stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(failure, stub.CreateTask, create_of_task_type("t" * 10_000_000))
        assert_still_answers(channel)
        error = big.result(timeout=CALL_TIMEOUT)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the limit of 4194304" in error.details()


def test_a_long_task_type_is_echoed_as_a_bounded_escaped_prefix(channel: grpc.Channel) -> None:
    stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(failure, stub.CreateTask, create_of_task_type("\n" + "t" * 3_000_000))
        assert_still_answers(channel)
        error = long.result(timeout=CALL_TIMEOUT)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    details = error.details()
    assert len(details) <= MAX_MESSAGE_CHARS
    assert "\\nttt" in details
    assert "\n" not in details
    assert "characters in all ...]" in details


def raw_call(channel: grpc.Channel, method: str, data: bytes) -> grpc.RpcError:
    return failure(channel.unary_unary(method), data)


def test_a_field_with_the_wrong_wire_type_is_invalid_argument(channel: grpc.Channel) -> None:
    # template (field 2, a message) sent as a varint
    error = raw_call(channel, CREATE, b"\x10\x07")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "field template (number 2) has the wrong wire type" in error.details()
    # inputs.literals (a message) sent as a varint, one level down
    error = raw_call(channel, CREATE, b"\x0a\x02\x08\x05")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "flyteidl2.task.Inputs: field literals" in error.details()
    # GetTask's task_category (a message) sent as a varint: refused before the full path
    error = raw_call(channel, GET, b"\x1a\x02{}" + b"\x10\x01")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_resource_meta_nested_too_deeply_is_invalid_argument(channel: grpc.Channel) -> None:
    stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
    meta = b"[" * 2000 + b"]" * 2000
    for name in ("echo", "plain"):
        request = pb.GetTaskRequest(task_category=pb.TaskCategory(name=name), resource_meta=meta)
        error = failure(stub.GetTask, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()


# Raw HTTP/2 ----------------------------------------------------------------------------


def h2_call(address: str, frames: list[tuple[bytes, bool]]) -> dict[str, str]:
    """One call on a fresh HTTP/2 connection: headers, then ``frames`` (data, end_stream).

    Returns the response's headers and trailers, merged.
    """
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT) as sock:
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", CREATE),
            (":authority", address),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        conn.send_headers(1, headers, end_stream=not frames)
        for data, end in frames:
            conn.send_data(1, data, end_stream=end)
        sock.sendall(conn.data_to_send())
        answer: dict[str, str] = {}
        while True:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before the call ended: {answer}"
            for event in conn.receive_data(chunk):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    answer.update(
                        (
                            k.decode() if isinstance(k, bytes) else k,
                            v.decode() if isinstance(v, bytes) else v,
                        )
                        for k, v in event.headers
                    )
                if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return answer
            sock.sendall(conn.data_to_send())


def prefix(length: int, *, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, length)


@pytest.mark.parametrize(
    ("frames", "status", "message"),
    [
        ([], "3", "request has no message"),
        ([(b"\x00\x00", True)], "3", "request ends inside its message prefix"),
        ([(prefix(100) + b"\x10" * 10, True)], "3", "shorter than its length prefix of 100"),
        ([(prefix(2, compressed=True) + b"\x10\x07", True)], "12", "compressed messages"),
    ],
    ids=["end-stream-without-message", "cut-prefix", "short-body", "compressed"],
)
def test_http2_framing_mistakes_get_a_precise_status(
    server: ServerProcess, frames: list[tuple[bytes, bool]], status: str, message: str
) -> None:
    answer = h2_call(server.address, frames)
    assert answer.get("grpc-status") == status, answer
    assert message in answer.get("grpc-message", "").replace("%20", " "), answer


def test_an_idle_connection_is_closed_and_a_busy_one_is_not(
    server: ServerProcess, channel: grpc.Channel
) -> None:
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT) as sock:
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while True:  # the server's settings, then nothing until it closes (--idle-timeout 1)
            chunk = sock.recv(65536)
            if not chunk:
                break
            conn.receive_data(chunk)
            sock.sendall(conn.data_to_send())
    assert_still_answers(channel)  # the shared channel reconnects or was never idle
