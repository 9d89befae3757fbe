"""The bench connector for our server: ``python -m supervisor serve --modules bench.ours``.

Task type ``bench`` (load runs) polls every ``BenchConnector.poll_interval`` seconds, short
enough that the jobs of a load run finish while it runs; task type ``bench_scale`` (scale
runs) polls every 30 s, as Propeller would. Both call the simulated service
(``bench.service``) with its latency, and record how late each poll came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from bench.service import service
from connectors import AsyncConnector, Phase, Resource, ResourceMeta, TaskLog
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

__all__ = ["BenchConnector", "BenchMeta", "ScaleConnector"]

PHASES = {"RUNNING": Phase.RUNNING, "DONE": Phase.SUCCEEDED, "CANCELLED": Phase.ABORTED}


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
    supports_idempotent_create = True  # the job id is the idempotency key
    poll_interval = 0.5

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> BenchMeta:
        simulated = service()
        custom = task_template.custom.to_dict() if task_template.custom is not None else {}
        await trio.sleep(simulated.latency)
        job_id, started = simulated.create(kwargs.get("idempotency_key"))
        simulated.created(job_id)
        return BenchMeta(job_id=job_id, started=started, duration=float(custom["duration"]))

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        simulated = service()
        simulated.poll_started(resource_meta.job_id, self.poll_interval)
        await trio.sleep(simulated.latency)
        state = simulated.state(resource_meta.job_id, resource_meta.started, resource_meta.duration)
        simulated.poll_ended(resource_meta.job_id)
        return Resource(
            phase=PHASES[state],
            message=state.lower(),
            log_links=[TaskLog(name="bench", uri=f"https://bench.invalid/{resource_meta.job_id}")],
        )

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        simulated = service()
        await trio.sleep(simulated.latency)
        simulated.cancel(resource_meta.job_id)


class ScaleConnector(BenchConnector):
    name = "Bench scale connector"
    task_type_name = "bench_scale"
    poll_interval = 30.0


service()  # start the counters file now, not on the first call
