"""A connector whose log is as big as its meta says, for streams a client never reads.

Its own module (loaded with ``--modules``) so that servers of the sample connectors list
the same connectors as before.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from connectors import AsyncConnector, Phase, Resource, ResourceMeta
from flyteproto.flyteidl2.connector import (
    GetTaskLogsResponse,
    GetTaskLogsResponseBody,
    GetTaskLogsResponseHeader,
    TaskExecutionMetadata,
)
from flyteproto.flyteidl2.core import TaskTemplate
from flyteproto.flyteidl2.logs.dataplane import LogLine


@dataclass
class BigLogMeta(ResourceMeta):
    chunks: int
    chunk_bytes: int


class BigLogConnector(AsyncConnector[BigLogMeta]):
    """A job whose log is ``chunks`` bodies of one ``chunk_bytes`` line each, made lazily."""

    name = "Big log connector"
    task_type_name = "biglog"
    metadata_type = BigLogMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> BigLogMeta:
        return BigLogMeta(chunks=1000, chunk_bytes=65536)

    async def get(self, resource_meta: BigLogMeta, **kwargs: Any) -> Resource:
        return Resource(phase=Phase.RUNNING)

    async def delete(self, resource_meta: BigLogMeta, **kwargs: Any) -> None:
        return None

    async def get_logs(
        self, resource_meta: BigLogMeta, **kwargs: Any
    ) -> AsyncIterator[GetTaskLogsResponse]:
        yield GetTaskLogsResponse(header=GetTaskLogsResponseHeader(token=""))
        at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        for n in range(resource_meta.chunks):
            # made in a thread, as a connector reads a log file: not cancellable meanwhile
            text = await trio.to_thread.run_sync(f"{n:08d}".ljust, resource_meta.chunk_bytes, "x")
            line = LogLine(timestamp=at, message=text)
            yield GetTaskLogsResponse(body=GetTaskLogsResponseBody(lines=[line]))
