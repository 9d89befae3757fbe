"""Clients that go away or stop reading, against a real ``serve`` process.

A client that resets its stream (a cancelled grpcio call, a passed deadline) is not a server
error: no traceback in the log, CANCELLED in the metrics, never INTERNAL. Streams a client
never reads hold one response each and are reset after ``--stream-send-timeout``; a
connection that does not answer keepalive pings is closed. The ping cases speak raw HTTP/2.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import h2.connection
import h2.events
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from tests.support.operators import create_request, sample, scrape
from tests.support.server import ServerProcess, wait_for
from tests.support.trust import sealed

SAMPLE_ARGS = [
    "--entry-points",
    "false",
    "--modules",
    "tests.support.sample_connectors",
    "tests.support.big_log_connector",
]
CALL_TIMEOUT = 60.0
BIG_LOG = pb.TaskCategory(name="biglog", version=0)


def big_log_request(chunks: int = 1000, chunk_bytes: int = 65536) -> pb.GetTaskLogsRequest:
    meta = json.dumps({"chunks": chunks, "chunk_bytes": chunk_bytes}).encode()
    return pb.GetTaskLogsRequest(task_category=BIG_LOG, resource_meta=sealed("biglog", meta))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path) as process:
        process.start()
        yield process


def test_clients_that_cancel_or_pass_their_deadline_are_not_server_errors(
    server: ServerProcess, tmp_path: Path
) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
        for n in range(10):
            # small chunks: the cancel finds the server sending or making the next one
            call = stub.GetTaskLogs(big_log_request(100_000, 100 * n + 10), timeout=CALL_TIMEOUT)
            for _, _ in zip(range(3 + 100 * n), call, strict=False):
                pass
            call.cancel()
        request = create_request(
            "slow",
            started_path=str(tmp_path / "started"),
            release_path=str(tmp_path / "never-released"),
        )
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateTask(request, timeout=0.5)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    def all_ten_counted() -> bool:
        samples = scrape(server.metrics_url)
        failure = "flyte_connector_requests_failure_total"
        count = sample(samples, failure, task_type="biglog", operation="get_logs", error_code="499")
        return count == 10

    wait_for("ten cancelled GetTaskLogs in the metrics", all_ten_counted, timeout=20)
    samples = scrape(server.metrics_url)
    failure = "flyte_connector_requests_failure_total"
    internal = sample(samples, failure, task_type="biglog", operation="get_logs", error_code="500")
    assert not internal
    log = server.stderr_text()
    assert "Traceback" not in log, log
    assert "Failed to handle cancellation" not in log, log
    assert "Request was cancelled" not in log, log  # grpclib's info line per call: dropped


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (``VmHWM``: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


#: Streams the client never reads, each of a 64 MB log.
UNREAD_STREAMS = 50
#: How much the server may grow meanwhile (the logs come to 3.2 GB).
RSS_GROWTH_BOUND = 150 * 1024 * 1024


def test_streams_never_read_hold_little_memory_and_end_after_the_send_timeout(
    tmp_path: Path,
) -> None:
    args = [*SAMPLE_ARGS, "--stream-send-timeout", "3", "--keepalive", "1"]
    with ServerProcess(args, log_dir=tmp_path) as server:
        server.start()
        # The window grpcio opens stays at HTTP/2's default when nothing is read.
        unread = grpc.insecure_channel(server.address, options=[("grpc.http2.bdp_probe", 0)])
        with unread, grpc.insecure_channel(server.address) as other:
            other_stub = service_pb2_grpc.AsyncConnectorServiceStub(other)
            echo = other_stub.CreateTask(create_request("echo"), timeout=CALL_TIMEOUT)
            get = pb.GetTaskRequest(
                task_category=pb.TaskCategory(name="echo"), resource_meta=echo.resource_meta
            )
            other_stub.GetTask(get, timeout=CALL_TIMEOUT)
            before = rss_bytes(server.pid)
            stub = service_pb2_grpc.AsyncConnectorServiceStub(unread)
            calls = [
                stub.GetTaskLogs(big_log_request(), timeout=CALL_TIMEOUT)
                for _ in range(UNREAD_STREAMS)
            ]
            assert other_stub.GetTask(get, timeout=5).resource.phase
            for call in calls:  # each is reset once stalled for 3 s
                assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, call.details()
                assert "RST_STREAM" in call.details()
            assert other_stub.GetTask(get, timeout=5).resource.phase
            peak = rss_bytes(server.pid, "VmHWM") - before
            assert peak < RSS_GROWTH_BOUND, f"peaked {peak} bytes over the start"
        print(f"RSS peaked {peak} bytes over the start with {UNREAD_STREAMS} unread streams")
        log = server.stderr_text()
        assert "Traceback" not in log, log


def pings_until_closed(address: str, *, answer: bool, pings: int) -> int:
    """Open a connection, send nothing else; count the server's PINGs until it closes the
    connection or ``pings`` have come (ACKed when ``answer``)."""
    host, port = address.rsplit(":", 1)
    seen = 0
    with socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT) as sock:
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while seen < pings:
            chunk = sock.recv(65536)
            if not chunk:
                return seen
            for event in conn.receive_data(chunk):
                seen += isinstance(event, h2.events.PingReceived)
            pending = conn.data_to_send()  # h2 ACKs pings itself: not sent unless answering
            if answer or seen == 0:
                sock.sendall(pending)
    return seen


def test_a_connection_that_does_not_answer_pings_is_closed(tmp_path: Path) -> None:
    args = [*SAMPLE_ARGS, "--keepalive", "0.5", "--idle-timeout", "off"]
    with ServerProcess(args, log_dir=tmp_path) as server:
        server.start()
        assert pings_until_closed(server.address, answer=True, pings=4) == 4
        # closed after the first unanswered ping (a second may cross the close)
        assert pings_until_closed(server.address, answer=False, pings=100) in (1, 2)
        assert "Traceback" not in server.stderr_text()
