"""Connectors for tests of the gRPC edge: loaded by the server with ``--modules``.

``EchoConnector`` succeeds at once and echoes its inputs as outputs; ``BrokenConnector``
fails every call; ``PlainConnector`` has no metrics or logs; ``KwargsConnector`` reports the
keyword arguments (secrets and configs) it was called with; ``SlowConnector``'s ``create``
and ``get`` block until a file exists (a call in flight, for drain and crash tests).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from connectors import AsyncConnector, Phase, Resource, ResourceMeta, TaskLog
from flyteproto.flyteidl2.connector import (
    GetTaskLogsResponse,
    GetTaskLogsResponseBody,
    GetTaskLogsResponseHeader,
    GetTaskMetricsResponse,
    TaskExecutionMetadata,
)
from flyteproto.flyteidl2.core import ExecutionMetricResult, TaskTemplate
from flyteproto.flyteidl2.logs.dataplane import LogLine
from flyteproto.google.protobuf import Struct


@dataclass
class EchoMeta(ResourceMeta):
    job_id: str
    inputs: dict[str, Any]
    secret_names: list[str]


class EchoConnector(AsyncConnector[EchoMeta]):
    name = "Echo connector"
    task_type_name = "echo"
    task_type_version = 0
    metadata_type = EchoMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> EchoMeta:
        plain = {k: v for k, v in (inputs or {}).items() if isinstance(v, int | str | float)}
        return EchoMeta(job_id=f"echo-{len(plain)}", inputs=plain, secret_names=sorted(kwargs))

    async def get(self, resource_meta: EchoMeta, **kwargs: Any) -> Resource:
        return Resource(
            phase=Phase.SUCCEEDED,
            message=f"echoed {resource_meta.job_id}",
            log_links=[TaskLog(name="console", uri=f"https://example.com/{resource_meta.job_id}")],
            outputs=dict(resource_meta.inputs),
            custom_info={"job_id": resource_meta.job_id, "secrets": resource_meta.secret_names},
        )

    async def delete(self, resource_meta: EchoMeta, **kwargs: Any) -> None:
        return None

    async def get_metrics(self, resource_meta: EchoMeta, **kwargs: Any) -> GetTaskMetricsResponse:
        return GetTaskMetricsResponse(results=[ExecutionMetricResult(metric="CPU_USAGE")])

    async def get_logs(
        self, resource_meta: EchoMeta, **kwargs: Any
    ) -> AsyncIterator[GetTaskLogsResponse]:
        yield GetTaskLogsResponse(header=GetTaskLogsResponseHeader(token="next-page"))
        at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        yield GetTaskLogsResponse(
            body=GetTaskLogsResponseBody(
                lines=[LogLine(timestamp=at, message=f"hello from {resource_meta.job_id}")]
            )
        )


@dataclass
class BrokenMeta(ResourceMeta):
    job_id: str


class BrokenConnector(AsyncConnector[BrokenMeta]):
    name = "Broken connector"
    task_type_name = "broken"
    metadata_type = BrokenMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> BrokenMeta:
        raise RuntimeError("boom: the external service refused the job")

    async def get(self, resource_meta: BrokenMeta, **kwargs: Any) -> Resource:
        raise RuntimeError("boom: status unavailable")

    async def delete(self, resource_meta: BrokenMeta, **kwargs: Any) -> None:
        raise RuntimeError("boom: cancel refused")

    async def get_metrics(self, resource_meta: BrokenMeta, **kwargs: Any) -> GetTaskMetricsResponse:
        raise RuntimeError("boom: no metrics today")


class PlainConnector(AsyncConnector[BrokenMeta]):
    name = "Plain connector"
    task_type_name = "plain"
    metadata_type = BrokenMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> BrokenMeta:
        custom = task_template.custom.to_dict() if task_template.custom else {}
        return BrokenMeta(job_id=str(custom.get("job_id", "plain")))

    async def get(self, resource_meta: BrokenMeta, **kwargs: Any) -> Resource:
        return Resource(phase=Phase.RUNNING, custom_info={"struct": Struct().to_dict()})

    async def delete(self, resource_meta: BrokenMeta, **kwargs: Any) -> None:
        return None


@dataclass
class KwargsMeta(ResourceMeta):
    create_kwargs: dict[str, Any]


class KwargsConnector(AsyncConnector[KwargsMeta]):
    """Puts the keyword arguments it receives in its answers.

    Test only: a real connector never writes a secret into resource_meta or custom_info.
    """

    name = "Kwargs connector"
    task_type_name = "kwargs"
    metadata_type = KwargsMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> KwargsMeta:
        return KwargsMeta(create_kwargs=dict(kwargs))

    async def get(self, resource_meta: KwargsMeta, **kwargs: Any) -> Resource:
        return Resource(phase=Phase.SUCCEEDED, custom_info={"get_kwargs": dict(kwargs)})

    async def delete(self, resource_meta: KwargsMeta, **kwargs: Any) -> None:
        return None


@dataclass
class SlowMeta(ResourceMeta):
    started_path: str
    release_path: str


#: How often SlowConnector looks for its release file.
SLOW_POLL_INTERVAL = 0.01


async def _block(started_path: str, release_path: str) -> None:
    """Create ``started_path``, then wait until ``release_path`` exists."""
    await trio.Path(started_path).touch()
    release = trio.Path(release_path)
    # A file from another process is the signal: there is no event to wait on.
    while not await release.exists():  # noqa: ASYNC110
        await trio.sleep(SLOW_POLL_INTERVAL)


class SlowConnector(AsyncConnector[SlowMeta]):
    """``create`` and ``get`` touch ``started_path``, then wait for ``release_path``.

    ``create`` takes both paths from the template's custom Struct.
    """

    name = "Slow connector"
    task_type_name = "slow"
    metadata_type = SlowMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> SlowMeta:
        custom = task_template.custom.to_dict() if task_template.custom else {}
        meta = SlowMeta(
            started_path=str(custom["started_path"]), release_path=str(custom["release_path"])
        )
        await _block(meta.started_path, meta.release_path)
        return meta

    async def get(self, resource_meta: SlowMeta, **kwargs: Any) -> Resource:
        await _block(resource_meta.started_path, resource_meta.release_path)
        return Resource(phase=Phase.SUCCEEDED, message="released")

    async def delete(self, resource_meta: SlowMeta, **kwargs: Any) -> None:
        return None
