"""Clients that go away or stop reading, against a real ``serve`` process.

A client that resets its stream (a cancelled grpcio call, a passed deadline) is not a server
error: no traceback in the log, CANCELLED in the metrics, never INTERNAL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from tests.support.operators import create_request, sample, scrape
from tests.support.server import ServerProcess, wait_for
from tests.support.trust import sealed

SAMPLE_ARGS = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
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
