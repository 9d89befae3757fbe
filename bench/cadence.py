"""Propeller's cadence: external API calls of both servers when GetTask comes as Propeller sends it.

Flyte Propeller's connector plugin does not call GetTask in a loop: its resource cache
resyncs every task every ``resync`` seconds (30 s by default), through a queue drained at
``qps`` calls per second at most (10 QPS by default). Past ``resync * qps`` tasks (300)
the queue is always behind and each task is asked every ``jobs / qps`` seconds instead.

For each job count N, both servers side by side (the load is light: at most ``qps``
GetTasks per second each):

1. Start both servers and create N long-running ``bench_scale`` jobs on each (ours polls
   them every 30 s on its own; the reference never polls).
2. A Propeller-like client per server asks each job with GetTask one resync period after
   its create or its previous GetTask, in due order, taking a token from one token bucket
   (``qps`` per second, burst ``qps``) before each call. The measured window (``window``
   seconds, a multiple of the resync period) starts one resync period after the last
   create, when the first asks come due: from then on every job is in its steady state.
3. Count the simulated service's external calls in the window (its counters file).

The report turns the per-job rates measured into the calls a deployment of 1k / 10k / 100k
live jobs would make, and how long a finished job may go unnoticed: ours notices on its own
poll (its connector's interval, whatever Propeller does); the reference only when Propeller
asks (every ``max(resync, jobs / qps)`` seconds).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc.aio
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from bench.load import CALL_TIMEOUT, create_request
from bench.scale import lag_quantile
from bench.servers import BenchServer, OursServer, ReferenceServer, read_stats, sample_process

__all__ = ["CadenceResult", "CadenceSpec", "propeller_period", "run_cadence"]

CREATE_CONCURRENCY = 32
JOB_SECONDS = 24 * 3600.0
_STATS_SETTLE = 0.3


@dataclass(frozen=True)
class CadenceSpec:
    jobs: int
    window: float = 60.0
    resync: float = 30.0  # Propeller's resync period of a task
    qps: float = 10.0  # Propeller's connector plugin rate limit
    task_type: str = "bench_scale"
    poll_interval: float = 30.0  # ours: the task type's connector poll interval


def propeller_period(jobs: int, resync: float, qps: float) -> float:
    """Seconds between two GetTasks of one task: the resync, or the queue's turn past the cap."""
    return max(resync, jobs / qps)


@dataclass
class CadenceResult:
    server: str
    jobs: int
    window: float = 0.0
    create_seconds: float = 0.0
    create_errors: int = 0
    gettasks: int = 0
    get_errors: int = 0
    external_gets: int = 0
    cpu_seconds: float = 0.0
    lag_p99: float = float("nan")  # ours: how late its own polls came

    def summary(self, spec: CadenceSpec) -> dict[str, Any]:
        window = self.window or float("nan")
        ours = self.server == "ours"
        return {
            "server": self.server,
            "jobs": self.jobs,
            "window": self.window,
            "resync": spec.resync,
            "qps": spec.qps,
            "create_errors": self.create_errors,
            "gettasks": self.gettasks,
            "gettask_rate": self.gettasks / window,
            "get_errors": self.get_errors,
            "external_gets": self.external_gets,
            "external_rate": self.external_gets / window,
            "external_per_job_second": self.external_gets / window / self.jobs,
            "external_per_gettask": (
                self.external_gets / self.gettasks if self.gettasks else float("nan")
            ),
            "cpu_per_second": self.cpu_seconds / window,
            "poll_lag_p99": self.lag_p99,
            # The longest a finished job stays unseen by the server (ours: one poll interval,
            # plus its lag; the reference: until Propeller asks).
            "unnoticed_seconds": (
                spec.poll_interval + (0.0 if math.isnan(self.lag_p99) else self.lag_p99)
                if ours
                else propeller_period(self.jobs, spec.resync, spec.qps)
            ),
        }


async def _create(address: str, jobs: int, task_type: str, result: CadenceResult) -> list[Any]:
    """``jobs`` jobs; the (create time, resource_meta) of each, in create order."""
    created: list[tuple[float, bytes]] = []
    left = [jobs]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)

        async def creator() -> None:
            while left[0] > 0:
                left[0] -= 1
                try:
                    response = await stub.CreateTask(
                        create_request(JOB_SECONDS, task_type), timeout=CALL_TIMEOUT
                    )
                    created.append((time.monotonic(), response.resource_meta))
                except grpc.aio.AioRpcError:
                    result.create_errors += 1

        await asyncio.gather(*(creator() for _ in range(CREATE_CONCURRENCY)))
    return created


async def _propeller(
    address: str,
    jobs: list[tuple[float, bytes]],
    spec: CadenceSpec,
    result: CadenceResult,
    window_start: float,
    on_window: Callable[[str], None],
) -> None:
    """Each job asked one resync after its create or last GetTask, through a 10 QPS bucket;
    the GetTasks sent from ``window_start`` for ``spec.window`` seconds are counted."""
    category = pb.TaskCategory(name=spec.task_type, version=0)
    due = [(at + spec.resync, n) for n, (at, _) in enumerate(jobs)]
    heapq.heapify(due)
    tokens, refilled = spec.qps, time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    counting = False
    end = window_start + spec.window
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)

        async def ask(n: int, counted: bool) -> None:
            request = pb.GetTaskRequest(task_category=category, resource_meta=jobs[n][1])
            try:
                await stub.GetTask(request, timeout=CALL_TIMEOUT)
                result.gettasks += counted
            except grpc.aio.AioRpcError:
                result.get_errors += counted
            # Propeller's resync puts the task back in the queue one period later.
            heapq.heappush(due, (time.monotonic() + spec.resync, n))

        while (now := time.monotonic()) < end:
            if not counting and now >= window_start:
                counting = True
                on_window("start")
            tokens = min(spec.qps, tokens + (now - refilled) * spec.qps)
            refilled = now
            if not due or due[0][0] > now:
                await asyncio.sleep(min(0.01, end - now))
                continue
            if tokens < 1.0:
                await asyncio.sleep((1.0 - tokens) / spec.qps)
                continue
            tokens -= 1.0
            _, n = heapq.heappop(due)
            task = asyncio.create_task(ask(n, counting))
            pending.add(task)
            task.add_done_callback(pending.discard)
        on_window("end")
        # The GetTasks sent in the window are answered (and counted) before the counters
        # are read again: the reference calls out only when asked.
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(_STATS_SETTLE)
        on_window("settled")


async def _measure(servers: list[BenchServer], spec: CadenceSpec) -> list[CadenceResult]:
    results = [CadenceResult(server.name, spec.jobs) for server in servers]
    created = []
    for server, result in zip(servers, results, strict=True):
        began = time.monotonic()
        created.append(await _create(server.address, spec.jobs, spec.task_type, result))
        result.create_seconds = time.monotonic() - began
    # The first asks come due one resync after the creates: from then on every job is in
    # its steady state (any window of k resync periods holds k asks, or polls, of each).
    window_start = time.monotonic() + spec.resync
    stats: dict[tuple[int, str], dict[str, Any] | None] = {}
    cpu: dict[tuple[int, str], float] = {}
    clients = []
    for index, (server, result, jobs) in enumerate(zip(servers, results, created, strict=True)):

        def on_window(edge: str, index: int = index, server: BenchServer = server) -> None:
            stats[index, edge] = read_stats(server.stats_file)
            if edge != "settled":
                cpu[index, edge] = sample_process(server.pid).cpu_seconds

        clients.append(_propeller(server.address, jobs, spec, result, window_start, on_window))
    await asyncio.gather(*clients)
    for index, result in enumerate(results):
        result.window = spec.window
        # Ours polls on its own: its calls are those up to the window's end. The reference
        # calls out only for a GetTask: its calls are those of the GetTasks sent in it.
        edge = "end" if isinstance(servers[index], OursServer) else "settled"
        before, end = stats[index, "start"], stats[index, edge]
        if before is not None and end is not None:
            # The counters as last written before each edge (within STATS_PERIOD, 0.1 s).
            result.external_gets = end["calls"]["get"] - before["calls"]["get"]
            histogram = [
                b - a for a, b in zip(before["lag_histogram"], end["lag_histogram"], strict=True)
            ]
            if sum(histogram):
                result.lag_p99 = lag_quantile(histogram, 0.99)
        result.cpu_seconds = cpu[index, "end"] - cpu[index, "start"]
    return results


def measure_cadence(
    servers: list[BenchServer], spec: CadenceSpec, log: Any = print
) -> list[CadenceResult]:
    """Steps 1-3 on fresh ``servers``, side by side (the load is light: at most ``qps``
    GetTasks per second each), so that one window covers them all."""
    started: list[BenchServer] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        results = asyncio.run(_measure(servers, spec))
    finally:
        for server in started:
            server.stop()
    for result in results:
        s = result.summary(spec)
        log(
            f"  {result.server:>9}, {spec.jobs:,} jobs: {s['gettask_rate']:.1f} GetTask/s, "
            f"{s['external_rate']:.1f} external calls/s ({s['external_per_gettask']:.2f} per "
            f"GetTask), a finished job unseen for up to {s['unnoticed_seconds']:.1f} s"
            + (f"; {result.get_errors} GetTask errors" if result.get_errors else "")
            + (f"; {result.create_errors} CreateTask errors" if result.create_errors else "")
        )
    return results


def run_cadence(
    specs: tuple[CadenceSpec, ...],
    workdir: Path,
    *,
    reference_env: Path | None,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Every spec on both servers at once; one summary per (server, spec)."""
    rows: list[dict[str, Any]] = []
    for spec in specs:
        servers: list[BenchServer] = []
        for name in ("ours", "reference"):
            if name == "reference" and reference_env is None:
                continue
            where = workdir / f"cadence-{spec.jobs}-{name}"
            where.mkdir(parents=True)
            if name == "ours":
                servers.append(OursServer(where, latency_ms=0))
            else:
                assert reference_env is not None
                servers.append(ReferenceServer(reference_env, where, latency_ms=0))
        rows += [r.summary(spec) for r in measure_cadence(servers, spec, log)]
    return rows
