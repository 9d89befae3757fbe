"""Trust: a resource_meta we did not hand out is refused (issue 11, item 8).

End to end on a real server with the official grpcio client, and on a real Supervisor on
virtual time for the storm of made-up metas.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from connectors import ConnectorRegistry
from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2 import connector as bpb
from supervisor import InMemoryJournal, InvalidArgument, Supervisor
from tests.support.server import ServerProcess
from tests.support.trust import sealed

SERVER_ARGS = ["--entry-points", "false", "--modules", "connectors.process"]
PROCESS = pb.TaskCategory(name="process", version=0)
CALL_TIMEOUT = 10.0


@pytest.fixture
def unrelated_sleep() -> Iterator[subprocess.Popen[bytes]]:
    sleep = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield sleep
    sleep.kill()
    sleep.wait()


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Any]:
    env = {"SUPERVISOR_PROCESS_ROOT": str(tmp_path / "jobs")}
    with ServerProcess(SERVER_ARGS, env=env, log_dir=tmp_path / "server") as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            yield service_pb2_grpc.AsyncConnectorServiceStub(channel)
        assert server.running, server.stderr_text()


def forged_victim(tmp_path: Path, pid: int) -> bytes:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "pid").write_text(str(pid))
    (victim / "stdout").write_text("someone else's secret\n")
    return json.dumps({"job_id": "victim", "job_dir": str(victim)}).encode()


def refused(call: Any, match: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert match in caught.value.details()


def test_a_forged_process_meta_is_refused_on_every_call_and_its_process_survives(
    stub: Any, tmp_path: Path, unrelated_sleep: subprocess.Popen[bytes]
) -> None:
    meta = forged_victim(tmp_path, unrelated_sleep.pid)
    for call in (
        lambda: stub.GetTask(
            pb.GetTaskRequest(task_category=PROCESS, resource_meta=meta), timeout=CALL_TIMEOUT
        ),
        lambda: stub.DeleteTask(
            pb.DeleteTaskRequest(task_category=PROCESS, resource_meta=meta), timeout=CALL_TIMEOUT
        ),
        lambda: stub.GetTaskMetrics(
            pb.GetTaskMetricsRequest(task_category=PROCESS, resource_meta=meta),
            timeout=CALL_TIMEOUT,
        ),
        lambda: list(
            stub.GetTaskLogs(
                pb.GetTaskLogsRequest(task_category=PROCESS, resource_meta=meta),
                timeout=CALL_TIMEOUT,
            )
        ),
    ):
        refused(call, "resource_meta carries no MAC")
    assert unrelated_sleep.poll() is None
    assert not (tmp_path / "victim" / "cancelled").exists()


def test_a_forged_meta_with_a_valid_mac_is_still_confined_by_the_process_connector(
    stub: Any, tmp_path: Path, unrelated_sleep: subprocess.Popen[bytes]
) -> None:
    # Even a meta under our key (a leaked key, say) cannot leave the process root.
    meta = sealed("process", forged_victim(tmp_path, unrelated_sleep.pid))
    stub.DeleteTask(
        pb.DeleteTaskRequest(task_category=PROCESS, resource_meta=meta), timeout=CALL_TIMEOUT
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(
            stub.GetTaskLogs(
                pb.GetTaskLogsRequest(task_category=PROCESS, resource_meta=meta),
                timeout=CALL_TIMEOUT,
            )
        )
    assert "outside" in (caught.value.details() or "")
    assert "secret" not in (caught.value.details() or "")
    assert unrelated_sleep.poll() is None
    assert not (tmp_path / "victim" / "cancelled").exists()


async def test_two_thousand_made_up_metas_leave_no_actor_and_no_journal_row(
    autojump_clock: Any,
) -> None:
    service, journal = FakeService(), InMemoryJournal()
    registry = ConnectorRegistry([FakeConnector(service)])
    category = bpb.TaskCategory(name="fake", version=0)
    async with Supervisor(registry, journal, wall_clock=trio.current_time).running() as sup:
        for n in range(2000):
            meta = FakeMeta(job_id=f"made-up-{n}").encode()
            request = bpb.GetTaskRequest(resource_meta=meta, task_category=category)
            with pytest.raises(InvalidArgument, match="carries no MAC"):
                await sup.get_task(request)
        await trio.sleep(3600)
        assert sup.statistics()["live_jobs"] == 0
    assert not journal.jobs
    assert service.calls["get"] == 0


def test_the_meta_key_comes_from_the_flag_the_variable_or_a_file(tmp_path: Path) -> None:
    from supervisor.cli import parse_serve

    key_file = tmp_path / "key"
    key_file.write_text("k" * 32 + "\n")
    assert parse_serve(["--meta-key", "f" * 20]).resource_meta_key() == b"f" * 20
    assert parse_serve([], {"SUPERVISOR_META_KEY": "e" * 16}).resource_meta_key() == b"e" * 16
    assert parse_serve(["--meta-key-file", str(key_file)]).resource_meta_key() == b"k" * 32
    assert parse_serve([]).resource_meta_key() is None  # the journal's key
    assert "f" * 20 not in repr(parse_serve(["--meta-key", "f" * 20]))
    for argv, message in (
        (["--meta-key", "short"], "at least 16 bytes"),
        (["--meta-key", "f" * 20, "--meta-key-file", str(key_file)], "not both"),
        (["--meta-key-file", str(tmp_path / "missing")], "cannot read --meta-key-file"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_serve(argv).resource_meta_key()


def test_serve_refuses_a_bad_meta_key_in_one_line(tmp_path: Path) -> None:
    server = ServerProcess(["--meta-key", "short"], log_dir=tmp_path)
    server.spawn()
    assert server.wait(timeout=30) == 2
    assert server.stderr_text().strip().splitlines() == [
        "error: the resource_meta key must be at least 16 bytes "
        "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
    ]
