"""The seam between the gRPC edge and whoever runs jobs.

The edge decodes a request, calls one method of a ``ConnectorService`` (Trio code), and
encodes the answer; it never sees a connector. ``DirectService`` is the stateless
implementation (one connector call per RPC, like Flyte's own connector service); the
``Supervisor`` (actors and a journal) is the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from flyteproto.flyteidl2 import connector as pb

__all__ = ["ConnectorService"]


class ConnectorService(Protocol):
    """What the gRPC edge needs. Errors: ServiceError subclasses, mapped to status codes."""

    async def create_task(
        self, request: pb.CreateTaskRequest, *, received: bytes | None = None
    ) -> pb.CreateTaskResponse:
        """``received``: ``request`` as it came on the wire (the edge's), when at hand."""
        ...

    async def get_task(self, request: pb.GetTaskRequest) -> pb.GetTaskResponse: ...

    def answer_now(
        self, task_type: str, version: int, resource_meta: bytes, credentials: Mapping[str, str]
    ) -> bytes | None:
        """GetTask's fast path: the encoded answer if it is at hand, else None (then the edge
        calls ``get_task``).

        Called by the edge on the asyncio side of the bridge, in the Trio thread but in no
        Trio task: it must not block or checkpoint (``send_nowait`` is fine). It answers only
        what ``get_task`` would answer the same for the same request.
        """
        ...

    async def delete_task(self, request: pb.DeleteTaskRequest) -> pb.DeleteTaskResponse: ...

    def journal_fault(self) -> str | None:
        """Why the service cannot keep its state now (health NOT_SERVING); None when it can."""
        ...

    async def get_task_metrics(
        self, request: pb.GetTaskMetricsRequest
    ) -> pb.GetTaskMetricsResponse: ...

    def get_task_logs(
        self, request: pb.GetTaskLogsRequest
    ) -> AsyncIterator[pb.GetTaskLogsResponse]: ...

    def list_connectors(self) -> pb.ListConnectorsResponse: ...

    def get_connector(self, name: str) -> pb.GetConnectorResponse: ...
