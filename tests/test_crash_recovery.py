"""Crash tests: the real server, killed with SIGKILL at chosen moments, on SQLite and PostgreSQL.

Every test drives ``python -m supervisor serve`` (``tests.support.server.ServerProcess``) with the
official ``flyteidl2`` grpcio client, as Propeller would, and runs once per journal backend.
The external jobs are local process jobs (task type ``process``); ``crash-process``
(``tests.support.crash_connectors``) is the same connector with hooks that hold a create or a
delete so that a kill -9 lands exactly where a test wants it.

A job's command appends a line to its own count file each time it runs (so a test sees
whether a job was started twice) and then waits for its release file, so it runs until the
test lets it end. States are awaited by polling with a deadline, never by fixed sleeps.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import execution_pb2, identifier_pb2, security_pb2, tasks_pb2
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervisor.edge import LIVENESS_SERVICE
from tests.support.crash_connectors import (
    DELETE_CALLS,
    DELETE_DONE,
    HOLD_AFTER_DELETE,
    HOLD_DELETE,
)
from tests.support.postgres import find_bin_dir, fresh_database, running_postgres
from tests.support.server import ServerProcess, ServerTimeout, wait_for

pytestmark = pytest.mark.slow

#: The protobuf-runtime messages of the official package are untyped.
Message = Any

SERVER_ARGS = [
    "--entry-points",
    "false",
    "--modules",
    "connectors.process",
    "tests.support.crash_connectors",
]
PROCESS = "process"
CRASH_PROCESS = "crash-process"
#: Deadline of every call: generous, so that only a hung server trips it.
CALL_TIMEOUT = 10.0
#: How long a job may take to reach a state the test waits for (jobs poll every second).
STATE_TIMEOUT = 20.0
#: How long a server may take to exit once told to.
EXIT_TIMEOUT = 15.0

RUNNING = execution_pb2.TaskExecution.RUNNING
SUCCEEDED = execution_pb2.TaskExecution.SUCCEEDED
ABORTED = execution_pb2.TaskExecution.ABORTED


# The world of one test -------------------------------------------------------------------


@dataclass
class Job:
    """One external job's command: counts its runs, then waits for its release file."""

    name: str
    count: Path
    release: Path

    def command(self) -> list[str]:
        count, release = shlex.quote(str(self.count)), shlex.quote(str(self.release))
        script = f"echo run >> {count}; while [ ! -e {release} ]; do sleep 0.05; done"
        return ["sh", "-c", script]

    def request(
        self, task_type: str = PROCESS, *, connection: Message = None, **hooks: str
    ) -> Message:
        """The CreateTask Propeller would send (and re-send) for this job's execution."""
        custom = struct_pb2.Struct()
        custom.update({"command": self.command(), **hooks})
        execution = identifier_pb2.TaskExecutionIdentifier(
            task_id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.TASK,
                project="crash",
                domain="tests",
                name=self.name,
                version="v1",
            ),
            node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                node_id="n0",
                execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                    project="crash", domain="tests", name=f"wf-{self.name}"
                ),
            ),
            retry_attempt=0,
        )
        return pb.CreateTaskRequest(
            template=tasks_pb2.TaskTemplate(type=task_type, custom=custom),
            output_prefix=f"file:///tmp/{self.name}",
            task_execution_metadata=pb.TaskExecutionMetadata(task_execution_id=execution),
            connection=connection,
        )

    def runs(self) -> int:
        """How many times the command has started."""
        return len(self.count.read_text().splitlines()) if self.count.exists() else 0

    def finish(self) -> None:
        self.release.touch()


@dataclass
class Lab:
    """One test's directory, journals (of one backend) and servers."""

    path: Path
    backend: str
    postgres_port: int | None
    stack: ExitStack
    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def jobs_root(self) -> Path:
        return self.path / "jobs"

    def journal(self, name: str = "journal") -> str:
        """The URL of a new, empty journal."""
        if self.postgres_port is None:
            return f"sqlite:///{self.path / name}.db"
        return self.stack.enter_context(fresh_database(self.postgres_port))

    def server(self, journal: str, *args: str) -> ServerProcess:
        """A server (not started) on ``journal``, serving the process connectors."""
        process = ServerProcess(
            [*SERVER_ARGS, *args],
            env={"SUPERVISOR_PROCESS_ROOT": str(self.jobs_root)},
            log_dir=self.path / f"server-{len(self.servers)}",
            journal=journal,
        )
        self.servers.append(process)
        return process

    def job(self, name: str) -> Job:
        return Job(name, self.path / f"{name}.count", self.path / f"{name}.release")

    def job_dirs(self) -> list[Path]:
        return sorted(p for p in self.jobs_root.iterdir() if p.is_dir())

    def close(self) -> None:
        for server in self.servers:
            server.close()
        if self.jobs_root.is_dir():
            for job_dir in self.job_dirs():
                _kill_job(job_dir)
        self.stack.close()


def _kill_job(job_dir: Path) -> None:
    """SIGKILL a job's process group if it still runs (the jobs outlive their server)."""
    pid = _pid(job_dir)
    if pid is not None and not (job_dir / "exit_status").exists():
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(params=["sqlite", "postgresql"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    port = None
    if request.param == "postgresql":
        port = request.getfixturevalue("postgres_server").port
    made = Lab(tmp_path, request.param, port, ExitStack())
    try:
        yield made
    finally:
        made.close()


# The official client ---------------------------------------------------------------------


class Client:
    """The official grpcio stub, with a deadline on every call."""

    def __init__(self, channel: Any) -> None:
        self.stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)

    def create(self, request: Message) -> bytes:
        meta: bytes = self.stub.CreateTask(request, timeout=CALL_TIMEOUT).resource_meta
        return meta

    def get(self, task_type: str, meta: bytes, *, connection: Message = None) -> Message:
        request = pb.GetTaskRequest(
            task_category=pb.TaskCategory(name=task_type, version=0),
            resource_meta=meta,
            connection=connection,
        )
        return self.stub.GetTask(request, timeout=CALL_TIMEOUT).resource

    def delete(self, task_type: str, meta: bytes) -> None:
        request = pb.DeleteTaskRequest(
            task_category=pb.TaskCategory(name=task_type, version=0), resource_meta=meta
        )
        assert self.stub.DeleteTask(request, timeout=CALL_TIMEOUT) == pb.DeleteTaskResponse()

    def wait_phase(
        self, task_type: str, meta: bytes, phase: int, *, connection: Message = None
    ) -> Message:
        """GetTask until the job reports ``phase``; return that Resource."""
        seen: list[Message] = []

        def reached() -> bool:
            seen[:] = [self.get(task_type, meta, connection=connection)]
            return bool(seen[0].phase == phase)

        try:
            wait_for(_phase_name(phase), reached, timeout=STATE_TIMEOUT)
        except ServerTimeout:
            last = seen[0] if seen else None
            raise AssertionError(
                f"job never reached {_phase_name(phase)}; last seen "
                f"{_phase_name(last.phase) if last else '-'}: {last.message if last else ''}"
            ) from None
        return seen[0]


@contextmanager
def connect(server: ServerProcess) -> Iterator[Client]:
    """A client of the server's current run (a restarted server listens on a new port)."""
    with grpc.insecure_channel(server.address) as channel:
        yield Client(channel)


def _phase_name(phase: int) -> str:
    return str(execution_pb2.TaskExecution.Phase.Name(phase))


# Looking at jobs and journals ------------------------------------------------------------


def job_dir_of(meta: bytes) -> Path:
    return Path(json.loads(meta)["job_dir"])


def _pid(job_dir: Path) -> int | None:
    try:
        return int((job_dir / "pid").read_text().split()[0])
    except (FileNotFoundError, ValueError):
        return None


def job_pid(meta: bytes) -> int:
    job_dir = job_dir_of(meta)
    wait_for("the job's pid", lambda: _pid(job_dir) is not None, timeout=STATE_TIMEOUT)
    pid = _pid(job_dir)
    assert pid is not None
    return pid


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def exit_status(meta: bytes) -> dict[str, Any]:
    """The job's recorded exit status, once its process has ended."""
    path = job_dir_of(meta) / "exit_status"
    wait_for("the job's exit status", path.exists, timeout=STATE_TIMEOUT)
    status: dict[str, Any] = json.loads(path.read_bytes())
    return status


def delete_calls(meta: bytes) -> int:
    path = job_dir_of(meta) / DELETE_CALLS
    return len(path.read_text().splitlines()) if path.exists() else 0


def resumed_line(count: int) -> str:
    return f": resumed {count} job(s)"


def journal_events(url: str, meta: bytes) -> list[str]:
    """The kinds of the journalled events of the job that ``meta`` names, in order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            job_id = connection.execute(
                sa.text("SELECT job_id FROM jobs WHERE resource_meta = :meta"), {"meta": meta}
            ).scalar_one()
            kinds = connection.execute(
                sa.text("SELECT kind FROM events WHERE job_id = :job_id ORDER BY seq"),
                {"job_id": job_id},
            )
            return [str(kind) for kind in kinds.scalars()]
    finally:
        engine.dispose()


def journal_bytes(url: str) -> bytes:
    """Everything the journal holds: the SQLite files' bytes (with ``-wal`` and ``-shm``),
    or every row of every PostgreSQL table (bytea as its bytes, text as UTF-8)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = sorted(path.parent.glob(f"{path.name}*"))
        assert path in files
        return b"".join(file.read_bytes() for file in files)
    engine = sa.create_engine(url)
    chunks: list[bytes] = []
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ).all()
            assert {"jobs", "events"} <= {name for _, name in tables}
            for schema, name in tables:
                query = f'SELECT * FROM "{schema}"."{name}"'
                for row in connection.execute(sa.text(query)):
                    chunks.extend(_as_bytes(value) for value in row)
    finally:
        engine.dispose()
    return b"\n".join(chunks)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def server_logs(*servers: ServerProcess) -> bytes:
    """Every run's stdout and stderr."""
    return b"".join(
        log.read_bytes() for server in servers for log in sorted(server.log_dir.glob("*.log"))
    )


# 1. kill -9 while creating -----------------------------------------------------------------


def test_kill_9_while_creating_then_a_resent_create_returns_the_one_external_job(
    lab: Lab,
) -> None:
    job = lab.job("create")
    held, release_create = lab.path / "create-held", lab.path / "release-create"
    request = job.request(
        CRASH_PROCESS, hold_create_until=str(release_create), create_held=str(held)
    )
    server = lab.server(lab.journal()).start()
    with connect(server) as rpc:
        in_flight = rpc.stub.CreateTask.future(request, timeout=CALL_TIMEOUT)
        wait_for(
            "the external process to start while the create is held",
            lambda: in_flight.done() or (held.exists() and job.runs() == 1),
            timeout=STATE_TIMEOUT,
        )
        assert not in_flight.done(), f"the create did not hold: {in_flight.exception()}"
        server.kill()
        assert in_flight.exception(timeout=CALL_TIMEOUT).code() == grpc.StatusCode.UNAVAILABLE
    release_create.touch()

    server.start()
    assert resumed_line(1) in server.stdout_text()
    with connect(server) as rpc:
        meta = rpc.create(request)  # Propeller re-sends the CreateTask it got no answer to
        assert [job_dir_of(meta)] == lab.job_dirs()
        job.finish()
        rpc.wait_phase(CRASH_PROCESS, meta, SUCCEEDED)
    assert job.runs() == 1
    server.kill()  # the journal has everything already: nothing is reported before it is
    assert journal_events(server.journal_url, meta).count("created") == 1


# 2. kill -9 while polling ------------------------------------------------------------------


def test_kill_9_while_polling_loses_no_job_and_creates_none_twice(lab: Lab) -> None:
    jobs = [lab.job(f"poll-{n}") for n in range(3)]
    server = lab.server(lab.journal()).start()
    with connect(server) as rpc:
        metas = [rpc.create(job.request()) for job in jobs]
        for meta in metas:
            rpc.wait_phase(PROCESS, meta, RUNNING)
    server.kill()

    server.start()
    assert resumed_line(3) in server.stdout_text()
    with connect(server) as rpc:
        again = [rpc.create(job.request()) for job in jobs]
        assert again == metas
        for meta in metas:
            assert rpc.get(PROCESS, meta).phase == RUNNING
        for job in jobs:
            job.finish()
        for meta in {*metas, *again}:
            rpc.wait_phase(PROCESS, meta, SUCCEEDED)
    assert [job.runs() for job in jobs] == [1, 1, 1]
    assert lab.job_dirs() == sorted(job_dir_of(meta) for meta in metas)


# 3. kill -9 while deleting -----------------------------------------------------------------


def test_kill_9_while_deleting_then_the_cancel_is_carried_out_once_after_restart(
    lab: Lab,
) -> None:
    job = lab.job("delete")  # never released: only the cancel ends it
    server = lab.server(lab.journal()).start()
    with connect(server) as rpc:
        meta = rpc.create(job.request(CRASH_PROCESS))
        pid = job_pid(meta)
        (job_dir_of(meta) / HOLD_DELETE).touch()
        rpc.delete(CRASH_PROCESS, meta)  # answered: the intent is journalled
        wait_for("the cancel to start", lambda: delete_calls(meta) == 1, timeout=STATE_TIMEOUT)
    server.kill()
    assert group_alive(pid), "the cancel was to be cut short by the crash"
    (job_dir_of(meta) / HOLD_DELETE).unlink()

    server.start()
    assert resumed_line(1) in server.stdout_text()
    with connect(server) as rpc:
        resource = rpc.wait_phase(CRASH_PROCESS, meta, ABORTED)
        assert "cancelled" in resource.message
        assert exit_status(meta) == {"returncode": -signal.SIGTERM}
        assert not group_alive(pid)
        rpc.delete(CRASH_PROCESS, meta)  # a later delete of the deleted job cancels nothing
    assert delete_calls(meta) == 2  # the one cut short, and the one after the restart
    assert job.runs() == 1
    server.kill()
    kinds = journal_events(server.journal_url, meta)
    assert (kinds.count("delete_intent"), kinds.count("deleted")) == (1, 1)


def test_kill_9_after_the_external_cancel_then_the_restart_does_not_cancel_again(
    lab: Lab,
) -> None:
    job = lab.job("deleted")  # never released: only the cancel ends it
    server = lab.server(lab.journal()).start()
    with connect(server) as rpc:
        meta = rpc.create(job.request(CRASH_PROCESS))
        pid = job_pid(meta)
        (job_dir_of(meta) / HOLD_AFTER_DELETE).touch()
        rpc.delete(CRASH_PROCESS, meta)
        wait_for(
            "the external cancel to be done",
            (job_dir_of(meta) / DELETE_DONE).exists,
            timeout=STATE_TIMEOUT,
        )
    server.kill()  # after the external cancel, before the journal records it
    assert not group_alive(pid)
    (job_dir_of(meta) / HOLD_AFTER_DELETE).unlink()

    server.start()
    assert resumed_line(1) in server.stdout_text()
    with connect(server) as rpc:
        resource = rpc.wait_phase(CRASH_PROCESS, meta, ABORTED)
        assert "cancelled" in resource.message
    assert delete_calls(meta) == 1  # the restart asked the service and cancelled nothing
    server.kill()
    kinds = journal_events(server.journal_url, meta)
    assert (kinds.count("delete_intent"), kinds.count("deleted")) == (1, 1)


# 4. Adoption -------------------------------------------------------------------------------


def test_server_with_an_empty_journal_adopts_a_job_another_server_created(lab: Lab) -> None:
    job = lab.job("adopt")  # never released: only the cancel ends it
    first = lab.server(lab.journal("journal-a")).start()
    with connect(first) as rpc:
        meta = rpc.create(job.request())
    pid = job_pid(meta)
    first.kill()

    second = lab.server(lab.journal("journal-b")).start()
    assert resumed_line(0) in second.stdout_text()
    with connect(second) as rpc:
        resource = rpc.get(PROCESS, meta)
        assert resource.phase == RUNNING
        assert resource.custom_info["pid"] == pid  # polled: the real job's state
        rpc.delete(PROCESS, meta)
        rpc.wait_phase(PROCESS, meta, ABORTED)
    assert exit_status(meta) == {"returncode": -signal.SIGTERM}
    assert not group_alive(pid)
    assert job.runs() == 1
    second.kill()
    kinds = journal_events(second.journal_url, meta)
    assert kinds[0] == "adopted"
    assert kinds.count("deleted") == 1


def test_a_delete_storm_of_a_job_the_journal_never_saw_cancels_it_once(lab: Lab) -> None:
    job = lab.job("adopt-storm")  # never released: only the cancel ends it
    first = lab.server(lab.journal("journal-a")).start()
    with connect(first) as rpc:
        meta = rpc.create(job.request(CRASH_PROCESS))
    pid = job_pid(meta)
    first.kill()

    second = lab.server(lab.journal("journal-b")).start()
    request = pb.DeleteTaskRequest(
        task_category=pb.TaskCategory(name=CRASH_PROCESS, version=0), resource_meta=meta
    )
    with connect(second) as rpc:
        storm = [rpc.stub.DeleteTask.future(request, timeout=CALL_TIMEOUT) for _ in range(1000)]
        assert all(future.result() == pb.DeleteTaskResponse() for future in storm)
        rpc.wait_phase(CRASH_PROCESS, meta, ABORTED)
        rpc.delete(CRASH_PROCESS, meta)  # after the actor ended: not adopted again
    assert not group_alive(pid)
    assert delete_calls(meta) == 1
    second.kill()
    kinds = journal_events(second.journal_url, meta)
    assert (kinds.count("adopted"), kinds.count("deleted")) == (1, 1)


# 5. No secrets at rest ---------------------------------------------------------------------


def test_secret_values_reach_neither_the_journal_nor_the_logs(lab: Lab) -> None:
    secret, config = f"s3cret-{os.urandom(8).hex()}", f"c0nfig-{os.urandom(8).hex()}"
    connection = security_pb2.Connection(
        secrets={"api_token": secret}, configs={"warehouse_region": config}
    )
    job = lab.job("secrets")
    server = lab.server(lab.journal(), "--log-level", "DEBUG").start()
    with connect(server) as rpc:
        meta = rpc.create(job.request(connection=connection))
        rpc.wait_phase(PROCESS, meta, RUNNING, connection=connection)
    server.kill()  # what a crash leaves behind
    at_crash = journal_bytes(server.journal_url)

    server.start()
    with connect(server) as rpc:
        wait_for(
            "the resumed job to wait for its credentials",
            lambda: "waiting for credentials" in rpc.get(PROCESS, meta).message,
            timeout=STATE_TIMEOUT,
        )
        job.finish()
        rpc.wait_phase(PROCESS, meta, SUCCEEDED, connection=connection)
    assert server.stop() == 0
    at_rest = journal_bytes(server.journal_url)
    logs = server_logs(server)

    assert b"api_token" in at_rest  # the keys may be kept; the scan reads what was kept
    assert b"debug" in logs.lower()  # the DEBUG lines were written, and read
    for value in (secret.encode(), config.encode()):
        assert value not in at_crash
        assert value not in at_rest
        assert value not in logs


# 6. Repeated CreateTask --------------------------------------------------------------------


def test_repeated_create_of_a_finished_job_returns_its_resource_meta_and_starts_nothing(
    lab: Lab,
) -> None:
    job = lab.job("repeat")
    job.finish()  # the command ends as soon as it has run
    server = lab.server(lab.journal()).start()
    with connect(server) as rpc:
        meta = rpc.create(job.request())
        rpc.wait_phase(PROCESS, meta, SUCCEEDED)
        assert rpc.create(job.request()) == meta
    server.kill()

    server.start()
    with connect(server) as rpc:
        assert rpc.create(job.request()) == meta
        assert rpc.get(PROCESS, meta).phase == SUCCEEDED
    assert job.runs() == 1
    assert lab.job_dirs() == [job_dir_of(meta)]


# 7. SIGTERM is not an abort ----------------------------------------------------------------


def test_sigterm_leaves_the_external_job_running_and_a_restart_polls_it_to_success(
    lab: Lab,
) -> None:
    job = lab.job("sigterm")
    server = lab.server(lab.journal()).start()
    with connect(server) as rpc:
        meta = rpc.create(job.request())
        rpc.wait_phase(PROCESS, meta, RUNNING)
    pid = job_pid(meta)
    assert server.stop() == 0
    assert group_alive(pid)
    assert not (job_dir_of(meta) / "cancelled").exists()

    server.start()
    assert resumed_line(1) in server.stdout_text()
    with connect(server) as rpc:
        assert rpc.get(PROCESS, meta).phase == RUNNING
        job.finish()
        rpc.wait_phase(PROCESS, meta, SUCCEEDED)
    assert exit_status(meta) == {"returncode": 0}
    assert job.runs() == 1
    server.kill()
    assert "delete_intent" not in journal_events(server.journal_url, meta)


# 8. The journal down under a running server ------------------------------------------------


def health_of(server: ServerProcess, service: str = "") -> int:
    """The health status of ``service``: "" (the whole server) is readiness."""
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        status: int = stub.Check(request, timeout=CALL_TIMEOUT).status
        return status


def test_postgresql_down_while_creating_is_waited_out_and_the_job_is_not_abandoned(
    tmp_path: Path,
) -> None:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl)")
    with running_postgres(bin_dir) as postgres:  # our own: this test stops it
        lab = Lab(tmp_path, "postgresql", postgres.port, ExitStack())
        down: list[bool] = []

        def stop() -> None:
            postgres.pause()
            down.append(True)

        def restart() -> None:
            down.clear()
            postgres.resume()

        try:
            _create_through_an_outage(lab, stop, restart)
        finally:
            if down:
                postgres.resume()  # so that the test's database can be dropped
            lab.close()


def _create_through_an_outage(
    lab: Lab, stop: Callable[[], None], restart: Callable[[], None]
) -> None:
    job = lab.job("outage")
    held, release_create = lab.path / "create-held", lab.path / "release-create"
    request = job.request(
        CRASH_PROCESS, hold_create_until=str(release_create), create_held=str(held)
    )
    server = lab.server(lab.journal()).start()
    serving = health_pb2.HealthCheckResponse.SERVING
    with connect(server) as rpc:
        in_flight = rpc.stub.CreateTask.future(request, timeout=CALL_TIMEOUT)
        wait_for("the create to be held", held.exists, timeout=STATE_TIMEOUT)
        stop()  # the external job exists; its "created" write will fail
        release_create.touch()
        error = in_flight.exception(timeout=CALL_TIMEOUT)
        assert error is not None
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
        assert "journal is unavailable" in error.details()
        wait_for("NOT_SERVING", lambda: health_of(server) != serving, timeout=STATE_TIMEOUT)
        # Readiness is out; liveness is not: the outage restarts no pod.
        assert health_of(server, LIVENESS_SERVICE) == serving
        with pytest.raises(grpc.RpcError) as again:
            rpc.create(request)  # Propeller's retry, during the outage
        assert again.value.code() == grpc.StatusCode.UNAVAILABLE
        restart()
        wait_for("SERVING", lambda: health_of(server) == serving, timeout=STATE_TIMEOUT)
        meta = rpc.create(request)
        job.finish()
        rpc.wait_phase(CRASH_PROCESS, meta, SUCCEEDED)
    assert job.runs() == 1
    assert [job_dir_of(meta)] == lab.job_dirs()
    with urllib.request.urlopen(server.metrics_url, timeout=CALL_TIMEOUT) as response:
        metrics = response.read().decode()
    errors = next(
        line for line in metrics.splitlines() if line.startswith("supervisor_journal_errors_total")
    )
    assert float(errors.split()[-1]) > 0
    server.kill()
    kinds = journal_events(server.journal_url, meta)
    assert kinds.count("created") == 1
    assert "create_failed" not in kinds
