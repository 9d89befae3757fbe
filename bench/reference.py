"""The bench connector for the reference server, flyte-sdk's ``flyte.connectors``.

Loaded with ``c0 --modules bench.reference`` in the reference's own environment (see
``bench.servers``). The same job as ``bench.ours``: task type ``bench``, the same simulated
service, the same answers; only the framework differs. The reference does not poll on its
own: every GetTask is one call to the service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from flyte.connectors import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta
from flyteidl2.connector.connector_pb2 import TaskExecutionMetadata
from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog
from flyteidl2.core.tasks_pb2 import TaskTemplate

from bench.service import service

__all__ = ["BenchConnector", "BenchMeta", "ScaleConnector"]

PHASES = {
    "RUNNING": TaskExecution.RUNNING,
    "DONE": TaskExecution.SUCCEEDED,
    "CANCELLED": TaskExecution.ABORTED,
}


@dataclass
class BenchMeta(ResourceMeta):
    job_id: str
    started: float  # wall clock
    duration: float  # seconds


class BenchConnector(AsyncConnector[BenchMeta]):
    name = "Bench connector"
    task_type_name = "bench"
    task_type_version = 0
    metadata_type = BenchMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> BenchMeta:
        simulated = service()
        duration = float(task_template.custom["duration"])
        await asyncio.sleep(simulated.latency)
        job_id, started = simulated.create()
        return BenchMeta(job_id=job_id, started=started, duration=duration)

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        simulated = service()
        await asyncio.sleep(simulated.latency)
        state = simulated.state(resource_meta.job_id, resource_meta.started, resource_meta.duration)
        return Resource(
            phase=PHASES[state],
            message=state.lower(),
            log_links=[TaskLog(name="bench", uri=f"https://bench.invalid/{resource_meta.job_id}")],
        )

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        simulated = service()
        await asyncio.sleep(simulated.latency)
        simulated.cancel(resource_meta.job_id)


class ScaleConnector(BenchConnector):
    """Task type ``bench_scale``: the same job (ours polls it every 30 s; this one never)."""

    name = "Bench scale connector"
    task_type_name = "bench_scale"


ConnectorRegistry.register(BenchConnector())
ConnectorRegistry.register(ScaleConnector())
service()  # start the counters file now, not on the first call
