"""N real replicas (``python -m supervisor serve``) on one PostgreSQL journal, for tests.

    replicas = ReplicaSet(database_url, tmp_path, Lease(0.5, 2.5))
    with replicas:
        replicas.start(3)
        client = RoundRobinClient(replicas)
        jobs = client.create_jobs(300)
        ...
        replicas[0].kill()

Each replica is a ``ServerProcess`` with ``--port 0``, the replica-test connector
(``tests.support.replica_connectors``), the shared resource_meta key (``ServerProcess`` sets
``SUPERVISOR_META_KEY`` to the tests' key for every process) and the lease flags
(``--heartbeat-interval``, ``--dead-after``). The connector writes every external call to one
file, ``calls.log``; ``CallLog`` reads it back and answers the questions the tests ask:
external creates per task, cancels per job, and which processes polled a job when.

``RoundRobinClient`` is the official grpcio client, one channel per live replica, each call
sent to the next replica in turn (as Flyte's executor does through a Kubernetes Service); a
call that finds its replica gone (UNAVAILABLE) moves on to the next one, as a client behind
a Service would once the endpoint is removed.
"""

from __future__ import annotations

import itertools
import re
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
import psycopg
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import execution_pb2, identifier_pb2, tasks_pb2
from google.protobuf import struct_pb2

from supervisor.wire import payload_of

from .replica_connectors import (
    CALLS_LOG,
    POLL_INTERVAL_ENV,
    TASK_TYPE,
    WHO_ENV,
    ReplicaTestMeta,
    done_path,
)
from .server import POLL_INTERVAL, ServerProcess, ServerTimeout

__all__ = [
    "FINAL_PHASES",
    "CallLog",
    "Job",
    "Lease",
    "NamespacedServer",
    "Replica",
    "ReplicaSet",
    "RoundRobinClient",
    "wait_until",
]

#: Deadline of one RPC: generous, so only a hung replica trips it.
CALL_TIMEOUT = 15.0
#: The first ``Replica.who`` of replicas in containers (above any real pid).
CONTAINER_WHO = 10_000_000
#: Concurrent RPCs of ``RoundRobinClient``'s bulk calls.
CLIENT_THREADS = 16
_Phase = execution_pb2.TaskExecution
FINAL_PHASES = frozenset({_Phase.SUCCEEDED, _Phase.FAILED, _Phase.ABORTED, _Phase.RETRYABLE_FAILED})
_REPLICA_ID = re.compile(r"^replica (?P<id>\S+)$", re.MULTILINE)


def wait_until(condition: str, check: Callable[[], bool], *, timeout: float) -> float:
    """Poll ``check`` until true; return when it became true (``time.monotonic()``).

    Errors: ServerTimeout naming ``condition`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServerTimeout(f"timed out after {timeout:.1f}s waiting for {condition}")
        time.sleep(POLL_INTERVAL * 5)
    return time.monotonic()


# Replicas -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """The lease settings every replica of a set gets, and the poll interval of its jobs."""

    heartbeat_interval: float = 0.5
    dead_after: float = 2.5
    poll_interval: float = 1.0

    @property
    def takeover_bound(self) -> float:
        """How soon after a replica dies its jobs must be polled by a survivor: the design's
        dead_after + heartbeat_interval + resume time, with one poll interval (the log
        shows a poll, not the adoption) and a second of slack for a loaded machine."""
        return self.dead_after + self.heartbeat_interval + self.poll_interval + 1.0

    def flags(self) -> list[str]:
        return [
            "--heartbeat-interval",
            f"{self.heartbeat_interval:g}",
            "--dead-after",
            f"{self.dead_after:g}",
        ]


class NamespacedServer(ServerProcess):
    """A ``ServerProcess`` in a PID namespace of its own, where it is pid 1: a container.

    ``unshare --kill-child`` takes the server down with it, kill -9 included. Signals other
    than SIGKILL reach ``unshare``, not the server: this one is for kill -9 only.
    """

    def command(self) -> list[str]:
        return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *super().command()]


class Replica:
    """One replica process: a ``ServerProcess`` that has (at most) one run.

    ``who`` is how the connector's log names it: its pid, or a number of its own when it
    runs in a PID namespace (where its pid is 1).
    """

    def __init__(self, name: str, server: ServerProcess, who: int | None = None) -> None:
        self.name = name
        self.server = server
        self.who = who or 0
        self.pid = 0
        self.address = ""
        self.paused = False  # SIGSTOPped: the client sends it nothing

    def wait_serving(self) -> Self:
        """Wait for the spawned process to serve. Errors: as ``ServerProcess.wait_serving``."""
        self.server.wait_serving()
        self.pid = self.server.pid
        self.who = self.who or self.pid
        self.address = self.server.address
        return self

    @property
    def replica_ids(self) -> list[str]:
        """The replica ids this process printed (``replica <id>``), oldest first."""
        return [m["id"] for m in _REPLICA_ID.finditer(self.server.stdout_text())]

    @property
    def running(self) -> bool:
        return self.server.running

    def kill(self) -> None:
        """kill -9, reaped."""
        self.server.kill()

    def send_signal(self, signum: int) -> None:
        self.server.send_signal(signum)

    def pause(self) -> float:
        """SIGSTOP; the client leaves it alone until ``resume``. When it was stopped."""
        self.paused = True
        self.send_signal(signal.SIGSTOP)
        return time.monotonic()

    def resume(self) -> float:
        """SIGCONT; when it was continued."""
        self.send_signal(signal.SIGCONT)
        self.paused = False
        return time.monotonic()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout`` (then kill -9); the exit code."""
        return self.server.stop(timeout)

    def log(self) -> str:
        """Its stderr (the log) so far."""
        return self.server.stderr_text()

    def metric(self, name: str) -> float:
        """The sum of every sample of the Prometheus metric ``name`` it serves now."""
        with urllib.request.urlopen(self.server.metrics_url, timeout=CALL_TIMEOUT) as answer:
            text = answer.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid} who {self.who} {self.address}>"


class ReplicaSet:
    """Replicas on one journal; every process it started is killed on ``close``.

    Args:
        journal: the PostgreSQL URL they share.
        log_dir: each replica's logs go to ``log_dir/<name>``; the jobs' directory (the call
            log and the done-files) is ``log_dir/jobs``.
        lease: the lease flags and poll interval (None: no lease flags, for a server that
            predates replicas).
        args: more ``serve`` arguments for every replica.
        containers: each replica in a PID namespace of its own (``NamespacedServer``), as
            containers on one host are: every one is pid 1, all see the same boot id.
    """

    def __init__(
        self,
        journal: str,
        log_dir: Path,
        lease: Lease | None = Lease(),
        args: Sequence[str] = (),
        *,
        containers: bool = False,
    ) -> None:
        self.journal = journal
        self.containers = containers
        self.log_dir = log_dir
        self.lease = lease or Lease()
        self._lease_flags = lease is not None
        self.args = list(args)
        self.jobs_dir = log_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.all: list[Replica] = []  # every replica ever started, in order
        self._names = itertools.count(1)

    def spawn(self) -> Replica:
        """A new replica process, started (it serves when this returns)."""
        return self.start(1)[0]

    def start(self, count: int) -> list[Replica]:
        """Start ``count`` replicas at once (their imports overlap); return them serving."""
        started = [self._spawn() for _ in range(count)]
        try:
            for replica in started:
                replica.wait_serving()
        except BaseException:
            for replica in started:
                replica.kill()
            raise
        return started

    def launch(self) -> Replica:
        """A new replica process, not waited for (``Replica.wait_serving``)."""
        return self._spawn()

    def _spawn(self) -> Replica:
        name = f"replica-{next(self._names)}"
        flags = ["--entry-points", "false", "--modules", "tests.support.replica_connectors"]
        if self._lease_flags:
            flags += self.lease.flags()
        env = {POLL_INTERVAL_ENV: f"{self.lease.poll_interval:g}"}
        who = None
        if self.containers:
            who = CONTAINER_WHO + len(self.all)
            env[WHO_ENV] = str(who)
        kind = NamespacedServer if self.containers else ServerProcess
        server = kind(
            [*flags, "--grace", "5", *self.args],
            env=env,
            log_dir=self.log_dir / name,
            journal=self.journal,
        )
        replica = Replica(name, server, who)
        self.all.append(replica)
        server.spawn()
        return replica

    @property
    def live(self) -> list[Replica]:
        """The replicas that serve: running, listening, not SIGSTOPped."""
        return [r for r in self.all if r.running and r.address and not r.paused]

    def by_who(self) -> dict[int, Replica]:
        """The replicas by the name the call log gives them (``Replica.who``)."""
        return {r.who: r for r in self.all}

    def execute(self, statement: str, *params: object) -> None:
        """Run one SQL statement on the replicas' database (psycopg placeholders ``%s``)."""
        conninfo = self.journal.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(statement, params)

    def history(self, job: str) -> str:
        """The job's journalled events, one a line: for assertion messages."""
        conninfo = self.journal.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(conninfo) as connection:
            rows = connection.execute(
                "SELECT at, kind, phase, detail FROM events WHERE job_id = %s ORDER BY seq", (job,)
            ).fetchall()
        return "\n".join(
            f"  {at:.3f} {kind} phase {phase} {detail}" for at, kind, phase, detail in rows
        )

    def move_to_another_host(self, replica: Replica) -> None:
        """Make ``replica``'s row name another node: peers then judge it by its heartbeat
        alone (they cannot look up the pid of a process on another host)."""
        (replica_id,) = replica.replica_ids
        self.execute("UPDATE replicas SET node = %s WHERE id = %s", "another-host", replica_id)

    def calls(self) -> CallLog:
        return CallLog(self.jobs_dir / CALLS_LOG)

    def finish(self, jobs: Iterable[Job]) -> None:
        """Let the external jobs succeed (their done-files)."""
        for job in jobs:
            done_path(self.jobs_dir, job.external_id).touch()

    def logs(self) -> str:
        """Every replica's log, each under its name: for assertion messages."""
        return "\n".join(
            f"--- {r.name} (pid {r.pid}, who {r.who})\n{r.log()[-4000:]}" for r in self.all
        )

    def close(self) -> None:
        for replica in self.all:
            replica.server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getitem__(self, index: int) -> Replica:
        return self.all[index]


# The client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A task the client created: its request name, resource_meta and external id."""

    name: str
    resource_meta: bytes
    external_id: str


class RpcFailed(RuntimeError):
    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code}: {details}")
        self.code = code


class RoundRobinClient:
    """The official grpcio stubs over every live replica of ``replicas``, in turn."""

    def __init__(self, replicas: ReplicaSet) -> None:
        self.replicas = replicas
        self._channels: dict[str, Any] = {}
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._run = uuid.uuid4().hex[:8]
        self._numbers = itertools.count()
        self.create_seconds = 0.0  # how long each external create takes (the connector waits)
        self.retry_unavailable = True  # on the next replica at once

    def stub(self, replica: Replica) -> Any:
        with self._lock:
            channel = self._channels.get(replica.address)
            if channel is None:
                channel = grpc.insecure_channel(replica.address)
                self._channels[replica.address] = channel
        return service_pb2_grpc.AsyncConnectorServiceStub(channel)

    def next_replica(self) -> Replica:
        live = self.replicas.live
        if not live:
            raise RuntimeError("no replica is running")
        with self._lock:
            turn = next(self._turn)
        return live[turn % len(live)]

    def call(self, method: str, request: Any, *, on: Replica | None = None) -> Any:
        """One RPC on ``on`` or the next replica; UNAVAILABLE moves on to the next one (not
        with ``on``, nor when ``retry_unavailable`` is off). Errors: RpcFailed."""
        retry = on is None and self.retry_unavailable
        attempts = 2 * max(1, len(self.replicas.live)) if retry else 1
        for attempt in range(attempts):
            replica = on or self.next_replica()
            try:
                return getattr(self.stub(replica), method)(request, timeout=CALL_TIMEOUT)
            except grpc.RpcError as exc:
                code = exc.code()
                if code != grpc.StatusCode.UNAVAILABLE or attempt + 1 == attempts:
                    raise RpcFailed(method, code, exc.details()) from None
        raise AssertionError("unreachable")

    # The three calls Propeller makes ----------------------------------------------------

    def create_request(self, name: str) -> Any:
        custom = struct_pb2.Struct()
        custom.update({"dir": str(self.replicas.jobs_dir), "create_seconds": self.create_seconds})
        execution = identifier_pb2.TaskExecutionIdentifier(
            task_id=identifier_pb2.Identifier(project="replicas", domain="test", name=name)
        )
        return pb.CreateTaskRequest(
            template=tasks_pb2.TaskTemplate(type=TASK_TYPE, custom=custom),
            output_prefix="s3://replicas/outputs",
            task_execution_metadata=pb.TaskExecutionMetadata(task_execution_id=execution),
        )

    def create(self, name: str | None = None, *, on: Replica | None = None) -> Job:
        name = name or f"{self._run}-{next(self._numbers)}"
        answer = self.call("CreateTask", self.create_request(name), on=on)
        meta = ReplicaTestMeta.decode(payload_of(answer.resource_meta))
        return Job(name, answer.resource_meta, meta.job)

    def get(self, job: Job, *, on: Replica | None = None) -> Any:
        """The job's Resource as a replica answers it."""
        request = pb.GetTaskRequest(task_category=_CATEGORY, resource_meta=job.resource_meta)
        return self.call("GetTask", request, on=on).resource

    def delete(self, job: Job, *, on: Replica | None = None) -> None:
        request = pb.DeleteTaskRequest(task_category=_CATEGORY, resource_meta=job.resource_meta)
        self.call("DeleteTask", request, on=on)

    # Bulk -------------------------------------------------------------------------------

    def create_jobs(
        self, count: int, *, on: Replica | None = None, threads: int = CLIENT_THREADS
    ) -> list[Job]:
        """``count`` new tasks, created concurrently, spread over the replicas in turn (or
        all on ``on``, which then owns them)."""
        names = [f"{self._run}-{next(self._numbers)}" for _ in range(count)]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda name: self.create(name, on=on), names))

    def phases(self, jobs: Sequence[Job]) -> dict[str, int]:
        """external id -> phase, as the replicas answer GetTask now (concurrently)."""
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            resources = list(pool.map(self.get, jobs))
        return {job.external_id: r.phase for job, r in zip(jobs, resources, strict=True)}

    def unfinished(self, jobs: Sequence[Job]) -> list[Job]:
        """The jobs whose GetTask does not show a final phase yet."""
        phases = self.phases(jobs)
        return [job for job in jobs if phases[job.external_id] not in FINAL_PHASES]

    def wait_final(self, jobs: Sequence[Job], *, timeout: float) -> list[Job]:
        """Wait until GetTask shows every job final; return the ones that never got there
        (the lost jobs: the caller asserts the list is empty)."""
        deadline = time.monotonic() + timeout
        pending = list(jobs)
        while pending and time.monotonic() < deadline:
            pending = self.unfinished(pending)
            if pending:
                time.sleep(self.replicas.lease.poll_interval / 2)
        return pending

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_CATEGORY = pb.TaskCategory(name=TASK_TYPE, version=0)


# The call log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    job: str
    who: int  # who polled: ``Replica.who``
    at: float  # time.monotonic() of the replica when it polled


class CallLog:
    """The external calls of every replica, read from the connector's shared file.

    ``refresh`` reads what was appended since the last read (complete lines only), so a
    test may look at the log again and again while the replicas run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.creates: Counter[str] = Counter()
        self.creators: dict[str, list[int]] = defaultdict(list)
        self.cancels: Counter[str] = Counter()
        self.cancellers: dict[str, list[int]] = defaultdict(list)
        self.polls: list[Poll] = []
        self._offset = 0
        self.refresh()

    def refresh(self) -> Self:
        if not self.path.exists():
            return self
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode().splitlines():
            kind, job, pid, *rest = line.split()
            if kind == "create":
                self.creates[job] += 1
                self.creators[job].append(int(pid))
            elif kind == "cancel":
                self.cancels[job] += 1
                self.cancellers[job].append(int(pid))
            elif kind == "get":
                self.polls.append(Poll(job, int(pid), float(rest[0])))
        return self

    def duplicated_creates(self) -> dict[str, int]:
        """Tasks created externally more than once: external id -> creates."""
        return {job: n for job, n in self.creates.items() if n > 1}

    def duplicated_cancels(self) -> dict[str, int]:
        return {job: n for job, n in self.cancels.items() if n > 1}

    def polls_between(self, start: float, end: float = float("inf")) -> Iterator[Poll]:
        return (p for p in self.polls if start <= p.at < end)

    def pollers(self, start: float, end: float = float("inf")) -> dict[str, set[int]]:
        """external id -> the pids that polled it in ``[start, end)``."""
        found: dict[str, set[int]] = defaultdict(set)
        for poll in self.polls_between(start, end):
            found[poll.job].add(poll.who)
        return found

    def repeated(self, since: float, gap: float) -> dict[str, tuple[int, float]]:
        """Jobs polled twice by one process less than ``gap`` seconds apart after ``since``
        (two actors of one job in one replica): external id -> (who, the gap)."""
        last: dict[tuple[str, int], float] = {}
        found: dict[str, tuple[int, float]] = {}
        for poll in self.polls_between(since):
            previous = last.get((poll.job, poll.who))
            if previous is not None and poll.at - previous < gap:
                found.setdefault(poll.job, (poll.who, poll.at - previous))
            last[(poll.job, poll.who)] = poll.at
        return found

    def last_poller(self) -> dict[str, int]:
        """external id -> the pid that polled it last."""
        return {poll.job: poll.who for poll in self.polls}

    def first_poll(self, after: float, pids: Iterable[int] | None = None) -> dict[str, Poll]:
        """external id -> its first poll at or after ``after`` (by one of ``pids``)."""
        wanted = None if pids is None else set(pids)
        first: dict[str, Poll] = {}
        for poll in self.polls_between(after):
            if (wanted is None or poll.who in wanted) and poll.job not in first:
                first[poll.job] = poll
        return first

    def polled(self, jobs: Iterable[str], after: float, pids: Iterable[int] | None = None) -> bool:
        """True when every one of ``jobs`` was polled at or after ``after`` (by ``pids``)."""
        first = self.first_poll(after, pids)
        return all(job in first for job in jobs)
