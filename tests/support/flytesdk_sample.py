"""A tiny flyte-sdk connector, written as a flyte-sdk plugin author would: asyncio code, the
official ``flyteidl2`` protobuf types, registered with flyte-sdk's ConnectorRegistry on import.

``SleepConnector`` "runs" a job for ``custom["seconds"]`` of asyncio loop time against an
in-memory service (``SERVICE``), so tests can count the calls it receives; a job whose
``custom["state"]`` is set reports that state through flyte-sdk's ``convert_to_flyte_phase``.
``python -m supervisor serve --modules tests.support.flytesdk_sample`` serves it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from flyte.connectors import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta
from flyte.connectors.utils import convert_to_flyte_phase
from flyteidl2.connector.connector_pb2 import (
    GetTaskLogsResponse,
    GetTaskLogsResponseHeader,
    GetTaskMetricsResponse,
    TaskExecutionMetadata,
)
from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog
from flyteidl2.core.tasks_pb2 import TaskTemplate
from google.protobuf import json_format

TASK_TYPE = "flytesdk_sleep"


@dataclass
class SleepJob:
    job_id: str
    ends_at: float
    state: str | None
    cancelled: bool = False


@dataclass
class SleepService:
    """The "external service": jobs in memory, and every call the connector received."""

    jobs: dict[str, SleepJob] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


SERVICE = SleepService()


@dataclass
class SleepMetadata(ResourceMeta):
    job_id: str
    seconds: float


class SleepConnector(AsyncConnector[SleepMetadata]):
    name = "flyte-sdk sleep connector"
    task_type_name = TASK_TYPE
    metadata_type = SleepMetadata

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> SleepMetadata:
        SERVICE.calls["create"] += 1
        SERVICE.seen.append(
            (
                "create",
                {
                    "task_template": task_template,
                    "output_prefix": output_prefix,
                    "inputs": inputs,
                    "task_execution_metadata": task_execution_metadata,
                    **kwargs,
                },
            )
        )
        await asyncio.sleep(0.001)  # the submit is I/O
        custom = json_format.MessageToDict(task_template.custom)
        job = SleepJob(
            job_id=f"sleep-{next(SERVICE.ids)}",
            ends_at=asyncio.get_running_loop().time() + float(custom.get("seconds", 0)),
            state=custom.get("state"),
        )
        SERVICE.jobs[job.job_id] = job
        return SleepMetadata(job_id=job.job_id, seconds=float(custom.get("seconds", 0)))

    async def get(self, resource_meta: SleepMetadata, **kwargs: Any) -> Resource:
        SERVICE.calls["get"] += 1
        SERVICE.seen.append(("get", {"resource_meta": resource_meta, **kwargs}))
        await asyncio.sleep(0.001)
        job = SERVICE.jobs[resource_meta.job_id]
        link = TaskLog(name="Sleep console", uri=f"https://sleep.example/{job.job_id}")
        if job.cancelled:
            return Resource(phase=TaskExecution.ABORTED, message="cancelled", log_links=[link])
        if job.state is not None:
            return Resource(phase=convert_to_flyte_phase(job.state), message=job.state)
        if asyncio.get_running_loop().time() < job.ends_at:
            return Resource(phase=TaskExecution.RUNNING, message="sleeping", log_links=[link])
        return Resource(
            phase=TaskExecution.SUCCEEDED,
            message="done",
            log_links=[link],
            outputs={"slept": resource_meta.seconds, "job": job.job_id},
            custom_info={"job_id": job.job_id},
        )

    async def delete(self, resource_meta: SleepMetadata, **kwargs: Any) -> None:
        SERVICE.calls["delete"] += 1
        SERVICE.seen.append(("delete", {"resource_meta": resource_meta, **kwargs}))
        await asyncio.sleep(0.001)
        SERVICE.jobs[resource_meta.job_id].cancelled = True

    async def get_metrics(
        self, resource_meta: SleepMetadata, **kwargs: Any
    ) -> GetTaskMetricsResponse:
        await asyncio.sleep(0)
        return GetTaskMetricsResponse()

    async def get_logs(  # an async generator, as flyte-sdk allows
        self, resource_meta: SleepMetadata, **kwargs: Any
    ) -> AsyncIterator[GetTaskLogsResponse]:
        for page in ("page-1", "page-2"):
            await asyncio.sleep(0)
            yield GetTaskLogsResponse(
                header=GetTaskLogsResponseHeader(token=f"{resource_meta.job_id}/{page}")
            )


ConnectorRegistry.register(SleepConnector())
