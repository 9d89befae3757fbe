"""A lost CreateTask answer, end to end: the official grpcio client's deadline expires while
the connector's create is still under way; the executor's retry (attempt 1) leaves one
external job running, not two."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl2.connector import connector_pb2, service_pb2_grpc
from flyteidl2.core import identifier_pb2, tasks_pb2
from google.protobuf import struct_pb2

from tests.support.registered_at_import import LEDGER_ROOT_ENV, LedgerConnector
from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow

ARGS = ["--entry-points", "false", "--modules", "tests.support.registered_at_import"]


def create(task: str, attempt: int, create_seconds: float) -> Any:
    custom = struct_pb2.Struct()
    custom.update({"create_seconds": create_seconds})
    return connector_pb2.CreateTaskRequest(
        template=tasks_pb2.TaskTemplate(type="ledger", custom=custom),
        output_prefix="s3://bucket/out",
        task_execution_metadata=connector_pb2.TaskExecutionMetadata(
            task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                task_id=identifier_pb2.Identifier(project="p", domain="d", name=task),
                retry_attempt=attempt,
            )
        ),
    )


def test_a_lost_create_answer_leaves_one_external_job_running(tmp_path: Path) -> None:
    ledger = LedgerConnector(tmp_path / "ledger")
    env = {LEDGER_ROOT_ENV: str(ledger.root)}
    with ServerProcess(ARGS, log_dir=tmp_path, env=env) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            # The creates take 3 s and the client gives up after 1 s: time enough for the
            # request to reach the connector, which then creates the job regardless.
            # Another task execution's attempt 0, whose answer was lost too: never touched.
            with pytest.raises(grpc.RpcError) as lost_other:
                stub.CreateTask(create("other", 0, 3.0), timeout=1.0)
            with pytest.raises(grpc.RpcError) as lost:
                stub.CreateTask(create("t", 0, 3.0), timeout=1.0)
            for error in (lost_other.value, lost.value):
                assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # The executor retries the task in place: attempt 1, a new task execution id.
            stub.CreateTask(create("t", 1, 0.0), timeout=10)

            def settled() -> bool:
                states = [(e["task"], e["attempt"], e["state"]) for e in ledger.entries().values()]
                return ("t", 0, "CANCELLED") in states and len(states) == 3

            wait_for("the superseded attempt's cancel", settled, timeout=15)
        running = sorted(
            (e["task"], e["attempt"]) for e in ledger.entries().values() if e["state"] == "RUNNING"
        )
        assert running == [("other", 0), ("t", 1)]
        [cancelled] = [e for e in ledger.entries().values() if e["state"] == "CANCELLED"]
        assert cancelled["cancels"] == 1
        assert server.stop() == 0
    listed = subprocess.run(
        [sys.executable, "-m", "supervisor", "journal", "ls", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={"SUPERVISOR_JOURNAL": server.journal_url, "PATH": ""},
    )
    messages = [job["message"] for job in json.loads(listed.stdout)]
    assert messages.count("superseded by attempt 1: the external job was cancelled") == 1
