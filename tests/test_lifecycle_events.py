"""A job's history records what happened to its actor: resumed after a restart, adopted
from a resource_meta the journal did not know, each with the replica (host:pid) and the
time, and ``journal show`` shows them. Real server processes, the official client."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from flyteidl2.connector import connector_pb2 as pb

from supervisor import Supervisor
from supervisor.journal import InMemoryJournal
from tests.support.operators import (
    CALL_TIMEOUT,
    SAMPLE_ARGS,
    category,
    create_request,
    run_cli,
    stub,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


def show(server: ServerProcess, job: str) -> dict[str, Any]:
    result = run_cli(["journal", "show", job, "--journal", server.journal_url, "--json"])
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def lifecycle(shown: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (event["kind"], event["detail"]["replica"])
        for event in shown["events"]
        if event["kind"] in ("resumed", "adopted")
    ]


def replica_of(server: ServerProcess) -> str:
    """The replica id the server's current run printed."""
    found = re.search(r"^replica (\S+)$", server.stdout_text(), re.MULTILINE)
    assert found, server.stdout_text()
    return found[1]


def test_a_restart_and_an_adoption_are_in_the_history(tmp_path: Path) -> None:
    host = socket.gethostname()
    with ServerProcess([*SAMPLE_ARGS, "--adopt-unsigned", "true"], log_dir=tmp_path) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            api = stub(channel)
            api.CreateTask(create_request("plain", job_id="mine"), timeout=CALL_TIMEOUT)
            request = pb.GetTaskRequest(
                task_category=category("plain"), resource_meta=b'{"job_id":"elsewhere"}'
            )
            api.GetTask(request, timeout=CALL_TIMEOUT)
        first = replica_of(server)
        server.kill()
        server.start()
        second = replica_of(server)
        server.stop()
    listed = run_cli(["journal", "ls", "--journal", server.journal_url, "--json"])
    shown = [show(server, job["job_id"]) for job in json.loads(listed.stdout)]
    assert len(shown) == 2
    adopted, mine = sorted(shown, key=lambda s: "adopted" not in [e["kind"] for e in s["events"]])
    assert first.startswith(f"{host}-")
    assert second.startswith(f"{host}-")
    assert lifecycle(mine) == [("resumed", second)]
    assert lifecycle(adopted) == [("adopted", first), ("resumed", second)]
    resumed = next(e for e in mine["events"] if e["kind"] == "resumed")
    assert resumed["at"] >= mine["job"]["created_at"]
    text = run_cli(["journal", "show", mine["job"]["job_id"], "--journal", server.journal_url])
    assert re.search(rf"\sresumed\s+[A-Z_]+\s+replica={second}[,\s]", text.stdout), text.stdout


async def test_resumed_events_are_written_in_a_few_transactions(autojump_clock: Any) -> None:
    """The resume path of many jobs: one write per RESUMED_BATCH jobs, not one per job."""
    from connectors import ConnectorRegistry
    from connectors.testing import FakeConnector, FakeService
    from supervisor.journal import CreateState, DeleteState, JobRecord, Put

    journal = InMemoryJournal()
    records = [
        JobRecord(
            job_id=f"job-{n}",
            task_type="fake",
            task_type_version=0,
            connector="Fake connector",
            attempt=0,
            create_state=CreateState.CREATED,
            delete_state=DeleteState.NONE,
            phase=2,
            created_at=1.0,
            updated_at=1.0,
            resource_meta=json.dumps({"job_id": f"job-{n}"}).encode(),
        )
        for n in range(12_000)
    ]
    await journal.write(*(Put(r, "created") for r in records))
    before = journal.counts.writes
    registry = ConnectorRegistry([FakeConnector(FakeService(), poll_interval=3600.0)])
    sup = Supervisor(registry, journal, wall_clock=lambda: 50.0)
    async with sup.running():
        assert sup.resumed == 12_000
        assert journal.counts.writes - before == 3  # RESUMED_BATCH = 5000
    assert journal.kinds("job-7") == ["created", "resumed"]
    await trio.lowlevel.checkpoint()
