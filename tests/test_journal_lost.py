"""A journal deleted, replaced or emptied under a running server (issue 11, item 4).

The server must notice, stop serving (health NOT_SERVING, every call UNAVAILABLE), say why
in one line, and never create an empty journal under itself. Real server processes, the
official grpcio client, a real SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import tasks_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervisor.edge import LIVENESS_SERVICE
from tests.support.server import ServerProcess, wait_for

SERVER_ARGS = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
CALL_TIMEOUT = 10.0
ECHO = pb.TaskCategory(name="echo", version=0)
#: The journal is checked every WATCH_INTERVAL (2 s) even when nothing is written.
NOTICE_TIMEOUT = 15.0


def create(stub: Any, name: str) -> bytes:
    template = tasks_pb2.TaskTemplate(type="echo")
    request = pb.CreateTaskRequest(template=template, output_prefix="s3://bucket/" + name)
    response = stub.CreateTask(request, timeout=CALL_TIMEOUT)
    meta: bytes = response.resource_meta
    return meta


def health_of(channel: Any, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
    status: int = answer.status
    return status


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[ServerProcess, Any, Any, bytes]]:
    with ServerProcess(SERVER_ARGS, log_dir=tmp_path / "server") as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            yield server, channel, stub, create(stub, "before")


def assert_stopped_serving(
    server: ServerProcess, channel: Any, stub: Any, meta: bytes, why: str
) -> None:
    wait_for(
        "health NOT_SERVING",
        lambda: health_of(channel) == health_pb2.HealthCheckResponse.NOT_SERVING,
        timeout=NOTICE_TIMEOUT,
    )
    # Liveness stays SERVING: a restart would start the pod on a new, empty journal.
    assert health_of(channel, LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        create(stub, "after")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert why in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:  # a live job's GetTask too (the hot path)
        stub.GetTask(
            pb.GetTaskRequest(task_category=ECHO, resource_meta=meta), timeout=CALL_TIMEOUT
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    lines = [line for line in server.stderr_text().splitlines() if "stopped serving" in line]
    assert len(lines) == 1
    assert why in lines[0]
    assert "Traceback" not in server.stderr_text()
    assert server.running  # up and saying NOT_SERVING, until the operator steps in


def test_a_deleted_journal_file_stops_serving_and_is_not_recreated(
    started: tuple[ServerProcess, Any, Any, bytes],
) -> None:
    server, channel, stub, meta = started
    path = Path(server.journal_url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert_stopped_serving(server, channel, stub, meta, "was deleted")
    assert not path.exists()


def test_a_replaced_journal_file_stops_serving(
    started: tuple[ServerProcess, Any, Any, bytes], tmp_path: Path
) -> None:
    server, channel, stub, meta = started
    path = Path(server.journal_url.removeprefix("sqlite:///"))
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    os.replace(other, path)
    assert_stopped_serving(server, channel, stub, meta, "was replaced")


def test_a_postgresql_journal_that_lost_its_tables_stops_serving(
    postgres_database_url: str, tmp_path: Path
) -> None:
    with ServerProcess(
        SERVER_ARGS, log_dir=tmp_path / "server", journal=postgres_database_url
    ) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            meta = create(stub, "before")
            engine = sa.create_engine(
                postgres_database_url.replace("postgresql:", "postgresql+psycopg:", 1)
            )
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql("DROP TABLE jobs, events, settings, alembic_version")
            finally:
                engine.dispose()
            assert_stopped_serving(server, channel, stub, meta, "tables are gone")


def test_first_start_creates_the_journal_file(tmp_path: Path) -> None:
    journal = tmp_path / "new" / "journal.db"
    url = f"sqlite:///{journal}"
    with ServerProcess(SERVER_ARGS, log_dir=tmp_path / "server", journal=url) as server:
        server.start()
        assert "creating a new, empty journal" in server.stdout_text()
        reader = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        assert reader.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        reader.close()
