"""The load generator: Propeller's calls, made with the official flyteidl2 grpcio aio stubs.

Each of ``concurrency`` workers loops over one job's life: CreateTask, then GetTask
``gets_per_job`` times, then DeleteTask (workload ``lifecycle``), or only CreateTask
(workload ``create``: the jobs then finish on their own), or creates one job and then
only polls it with GetTask (workload ``get``: the cost of a GetTask alone). The workers run
for ``warmup`` seconds unmeasured, then for ``duration`` seconds during which every
completed call's latency is kept; the ``on_window`` callbacks mark the start and end of
that window (the harness samples the server's CPU there).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import identifier_pb2, tasks_pb2
from google.protobuf import struct_pb2

__all__ = [
    "CALL_TIMEOUT",
    "RPCS",
    "LoadResult",
    "LoadSpec",
    "create_request",
    "percentile",
    "run_load",
]

#: Propeller's deadline for connector calls.
CALL_TIMEOUT = 10.0
RPCS = ("CreateTask", "GetTask", "DeleteTask")


@dataclass(frozen=True)
class LoadSpec:
    workload: str  # "lifecycle", "create" or "get"
    concurrency: int
    duration: float
    warmup: float
    gets_per_job: int = 10
    job_seconds: float = 2.0  # how long a job "runs" on the simulated service
    task_type: str = "bench"
    #: gRPC connections the workers are spread over (round-robin). SO_REUSEPORT balances
    #: connections, not requests: ``serve --workers N`` needs several to share the load.
    channels: int = 1


@dataclass
class LoadResult:
    """What the workers saw in the measured window."""

    window: float = 0.0  # seconds
    latencies: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in RPCS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RPCS, 0))
    error_samples: list[str] = field(default_factory=list)
    client_cpu: float = 0.0  # seconds of this process's CPU in the window

    def count(self, rpc: str) -> int:
        return len(self.latencies[rpc])

    def rate(self, rpc: str) -> float:
        return self.count(rpc) / self.window if self.window else 0.0

    @property
    def total(self) -> int:
        return sum(self.count(rpc) for rpc in RPCS)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, nearest rank; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return ordered[index]


_run_id = uuid.uuid4().hex[:8]
_job_numbers = itertools.count()


def create_request(job_seconds: float, task_type: str = "bench") -> Any:
    """A CreateTaskRequest for a new task execution (so our server makes a new job)."""
    custom = struct_pb2.Struct()
    custom.update({"duration": job_seconds})
    execution = identifier_pb2.TaskExecutionIdentifier(
        task_id=identifier_pb2.Identifier(
            project="bench", domain="development", name=f"{_run_id}-{next(_job_numbers)}"
        )
    )
    return pb.CreateTaskRequest(
        template=tasks_pb2.TaskTemplate(type=task_type, custom=custom),
        output_prefix="s3://bench/outputs",
        task_execution_metadata=pb.TaskExecutionMetadata(task_execution_id=execution),
    )


class _Recorder:
    def __init__(self, result: LoadResult) -> None:
        self.result = result
        self.on = False

    async def call(self, rpc: str, method: Any, request: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await method(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if self.on:
                self.result.errors[rpc] += 1
                if len(self.result.error_samples) < 5:
                    self.result.error_samples.append(f"{rpc}: {exc.code()}: {exc.details()}")
            return None
        if self.on:
            self.result.latencies[rpc].append(time.perf_counter() - started)
        return response


async def _worker(stub: Any, spec: LoadSpec, recorder: _Recorder) -> None:
    category = pb.TaskCategory(name=spec.task_type, version=0)
    if spec.workload == "get":
        await _poll_one_job(stub, spec, recorder, category)
    while True:
        created = await recorder.call(
            "CreateTask", stub.CreateTask, create_request(spec.job_seconds, spec.task_type)
        )
        if created is None or spec.workload == "create":
            continue
        get = pb.GetTaskRequest(task_category=category, resource_meta=created.resource_meta)
        for _ in range(spec.gets_per_job):
            await recorder.call("GetTask", stub.GetTask, get)
        delete = pb.DeleteTaskRequest(task_category=category, resource_meta=created.resource_meta)
        await recorder.call("DeleteTask", stub.DeleteTask, delete)


async def _poll_one_job(stub: Any, spec: LoadSpec, recorder: _Recorder, category: Any) -> None:
    created = None
    while created is None:
        created = await recorder.call(
            "CreateTask", stub.CreateTask, create_request(spec.job_seconds, spec.task_type)
        )
    get = pb.GetTaskRequest(task_category=category, resource_meta=created.resource_meta)
    while True:
        await recorder.call("GetTask", stub.GetTask, get)


async def _drive(
    address: str, spec: LoadSpec, on_window: Callable[[str], None] | None
) -> LoadResult:
    result = LoadResult()
    recorder = _Recorder(result)
    # A local subchannel pool per channel: without it grpcio shares one TCP connection
    # between channels to the same address.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(address, options=options) for _ in range(max(1, spec.channels))
    ]
    stubs = [service_pb2_grpc.AsyncConnectorServiceStub(channel) for channel in channels]
    try:
        workers = [
            asyncio.create_task(_worker(stubs[n % len(stubs)], spec, recorder))
            for n in range(spec.concurrency)
        ]
        try:
            await asyncio.sleep(spec.warmup)
            if on_window is not None:
                on_window("start")
            cpu = time.process_time()
            started = time.perf_counter()
            recorder.on = True
            await asyncio.sleep(spec.duration)
            recorder.on = False
            result.window = time.perf_counter() - started
            result.client_cpu = time.process_time() - cpu
            if on_window is not None:
                on_window("end")
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    finally:
        for channel in channels:
            await channel.close()
    return result


def run_load(
    address: str, spec: LoadSpec, on_window: Callable[[str], None] | None = None
) -> LoadResult:
    """Drive the server at ``address`` per ``spec``; ``on_window("start"/"end")`` marks it."""
    return asyncio.run(_drive(address, spec, on_window))
