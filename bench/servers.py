"""The two servers under test, as child processes, and what /proc says about them.

``OursServer`` is ``python -m supervisor serve --modules bench.ours`` (through the tests'
``ServerProcess``); ``ReferenceServer`` is flyte-sdk's connector service (its ``c0``
command, ``ConnectorService.run``) from its own virtual environment, which
``ensure_reference_env`` creates with a pinned ``flyte[connector]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from flyteidl2.connector import connector_pb2, service_pb2_grpc

from bench.service import LATENCY_ENV, STATS_ENV
from tests.support.server import REPO_ROOT, ServerProcess

__all__ = [
    "BENCH_DIR",
    "REFERENCE_ENV",
    "REFERENCE_REQUIREMENTS",
    "BenchServer",
    "OursServer",
    "ProcSample",
    "ReferenceServer",
    "ensure_reference_env",
    "read_stats",
    "reference_env_ready",
    "sample_process",
    "sample_tree",
    "tree_pids",
]

BENCH_DIR = Path(__file__).resolve().parent
REFERENCE_ENV = BENCH_DIR / ".venv-reference"
#: The reference server, pinned; py-spy (the profiler) rides along in the same environment.
REFERENCE_REQUIREMENTS = ("flyte[connector]==2.12.1", "py-spy==0.4.3")
#: ``c0 --worker``: flyte-sdk's default thread pool size.
REFERENCE_WORKERS = 10
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_STAMP = ".bench-requirements"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def reference_env_ready(env: Path = REFERENCE_ENV) -> bool:
    """Whether ``env`` holds exactly ``REFERENCE_REQUIREMENTS``."""
    stamp = env / _STAMP
    return stamp.is_file() and stamp.read_text() == "\n".join(REFERENCE_REQUIREMENTS)


def ensure_reference_env(env: Path = REFERENCE_ENV) -> Path:
    """Create (once) the reference's virtual environment; returns it. Errors: CalledProcessError."""
    if reference_env_ready(env):
        return env
    print(f"creating {env} with {', '.join(REFERENCE_REQUIREMENTS)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REFERENCE_REQUIREMENTS], check=True)
    (env / _STAMP).write_text("\n".join(REFERENCE_REQUIREMENTS))
    return env


def read_stats(path: Path) -> dict[str, Any] | None:
    """The simulated service's counters file, or None before its first write."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_seconds: float  # user + system, all threads
    rss_kib: int
    hwm_kib: int  # peak RSS


def sample_process(pid: int) -> ProcSample:
    """CPU time (utime + stime from /proc/PID/stat) and RSS (VmRSS, VmHWM) of ``pid``."""
    at = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14, 15
    memory: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0])
    return ProcSample(at, cpu, memory.get("VmRSS", 0), memory.get("VmHWM", 0))


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def sample_tree(pid: int) -> ProcSample:
    """``sample_process`` summed over ``pid`` and its descendants (``serve --workers N``)."""
    samples = []
    for member in tree_pids(pid):
        try:
            samples.append(sample_process(member))
        except OSError:
            continue
    return ProcSample(
        at=time.monotonic(),
        cpu_seconds=sum(s.cpu_seconds for s in samples),
        rss_kib=sum(s.rss_kib for s in samples),
        hwm_kib=sum(s.hwm_kib for s in samples),
    )


class BenchServer(Protocol):
    name: str
    stats_file: Path

    @property
    def pid(self) -> int: ...

    @property
    def address(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...


def _bench_env(latency_ms: float, stats_file: Path) -> dict[str, str]:
    return {LATENCY_ENV: str(latency_ms), STATS_ENV: str(stats_file)}


class OursServer:
    """Our server with the bench connectors and a journal (SQLite in ``workdir`` by default).

    ``workers`` > 1: ``serve --workers N`` (PostgreSQL ``journal`` only): ``pid`` is the
    supervising process, the workers its children (``sample_tree`` sums them); the
    counters file is then the last writer's, not the sum.
    """

    name = "ours"

    def __init__(
        self,
        workdir: Path,
        *,
        latency_ms: float,
        journal: str | None = None,
        run: str = "1",
        workers: int = 1,
    ) -> None:
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.stats_file = workdir / f"stats-{run}.json"
        self.workers = workers
        flags = ["--workers", str(workers)] if workers > 1 else []
        self.process = ServerProcess(
            ["--entry-points", "false", "--modules", "bench.ours", *flags],
            env=_bench_env(latency_ms, self.stats_file),
            log_dir=workdir,
            journal=journal or f"sqlite:///{workdir / 'journal.db'}",
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        return self.process.address

    def restart_as(self, run: str) -> None:
        """The next ``start`` writes its counters to a file of its own."""
        self.stats_file = self.workdir / f"stats-{run}.json"
        self.process.env.update(_bench_env(self.latency_ms, self.stats_file))

    def start(self) -> None:
        self.process.start(timeout=STARTUP_TIMEOUT)

    def stop(self) -> None:
        workers = self._workers()
        self.process.stop(timeout=STOP_TIMEOUT)
        _kill_leftovers(workers)

    def kill(self) -> None:
        # The workers of ``--workers N`` run in sessions of their own: kill them too.
        workers = self._workers()
        self.process.kill()
        _kill_leftovers(workers)

    def _workers(self) -> list[tuple[int, str]]:
        if not self.process.running:
            return []
        return [(pid, _start_time(pid)) for pid in tree_pids(self.pid)[1:]]


def _start_time(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split()[19]


def _kill_leftovers(workers: list[tuple[int, str]]) -> None:
    """SIGKILL those of our server's workers that are still alive (same pid, same start)."""
    for pid, started in workers:
        if started and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class ReferenceServer:
    """flyte-sdk's connector service (``c0``) with ``bench.reference``, from ``env``."""

    name = "reference"

    def __init__(self, env: Path, workdir: Path, *, latency_ms: float) -> None:
        self.env = env
        self.workdir = workdir
        self.stats_file = workdir / "stats-reference.json"
        self._extra_env = _bench_env(latency_ms, self.stats_file)
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    def start(self) -> None:
        """Start ``c0`` and wait until ListConnectors answers. Errors: RuntimeError."""
        self._port = _free_port()
        command = [
            str(self.env / "bin" / "c0"),
            *("--port", str(self._port), "--prometheus_port", str(_free_port())),
            *("--worker", str(REFERENCE_WORKERS), "--modules", "bench.reference"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "VIRTUAL_ENV"))}
        env.update({"PYTHONUNBUFFERED": "1", **self._extra_env})
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (
            (self.workdir / "reference-stdout.log").open("wb") as stdout,
            (self.workdir / "reference-stderr.log").open("wb") as stderr,
        ):
            self._process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with grpc.insecure_channel(self.address) as channel:
            stub = service_pb2_grpc.ConnectorMetadataServiceStub(channel)
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    log = (self.workdir / "reference-stderr.log").read_text(errors="replace")
                    raise RuntimeError(f"reference server exited:\n{log[-4000:]}")
                try:
                    stub.ListConnectors(connector_pb2.ListConnectorsRequest(), timeout=1.0)
                    return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("reference server did not answer in time") from None
                    time.sleep(0.1)

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
