"""The seam between the gRPC edge and whoever runs jobs.

The edge decodes a request, calls one method of a ``ConnectorService`` (Trio code), and
encodes the answer; it never sees a connector. ``DirectService`` is the stateless
implementation (one connector call per RPC, like Flyte's own connector service); the
supervisor (actors and a journal) is the other.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Protocol, TypeVar

from connectors import AsyncConnector, ConnectorNotFound, ConnectorRegistry, ResourceMeta
from flyteproto.flyteidl2 import connector as pb

from .._errors import ConnectorFailed, InvalidArgument, NotFound, ServiceError, Unimplemented
from ..wire import (
    connection_kwargs,
    connector_for_category,
    connector_for_type,
    decode_meta,
    native_inputs,
    resource_to_proto,
)

__all__ = ["ConnectorService", "DirectService", "call_connector"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


class ConnectorService(Protocol):
    """What the gRPC edge needs. Errors: ServiceError subclasses, mapped to status codes."""

    async def create_task(self, request: pb.CreateTaskRequest) -> pb.CreateTaskResponse: ...

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

    async def get_task_metrics(
        self, request: pb.GetTaskMetricsRequest
    ) -> pb.GetTaskMetricsResponse: ...

    def get_task_logs(
        self, request: pb.GetTaskLogsRequest
    ) -> AsyncIterator[pb.GetTaskLogsResponse]: ...

    def list_connectors(self) -> pb.ListConnectorsResponse: ...

    def get_connector(self, name: str) -> pb.GetConnectorResponse: ...


async def call_connector(connector: AsyncConnector[Any], operation: str, call: Awaitable[_T]) -> _T:
    """Await a connector call; anything it raises becomes ConnectorFailed (NotImplementedError:
    Unimplemented).

    Cancellation: passes through untouched.
    """
    try:
        return await call
    except (ServiceError, StopAsyncIteration):
        raise
    except NotImplementedError as exc:
        raise Unimplemented(
            str(exc) or f"{connector.name} does not implement {operation}"
        ) from None
    except Exception as exc:
        _log.warning("%s %s failed: %s: %s", connector.name, operation, type(exc).__name__, exc)
        raise ConnectorFailed(f"{connector.name} {operation} failed: {exc}") from exc


class StatelessAnswers:
    """The RPCs that need no job state, answered from a registry: ListConnectors and
    GetConnector from the connectors' metadata; GetTaskMetrics and GetTaskLogs straight from
    the connector (the supervisor keeps neither)."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry

    def list_connectors(self) -> pb.ListConnectorsResponse:
        return pb.ListConnectorsResponse(connectors=self.registry.list_metadata())

    def get_connector(self, name: str) -> pb.GetConnectorResponse:
        try:
            return pb.GetConnectorResponse(connector=self.registry.metadata(name))
        except ConnectorNotFound as exc:
            raise NotFound(str(exc)) from None

    async def get_task_metrics(
        self, request: pb.GetTaskMetricsRequest
    ) -> pb.GetTaskMetricsResponse:
        connector = connector_for_category(self.registry, request.task_category)
        meta = await self.meta_to_act_on(connector, request.task_category, request.resource_meta)
        return await metrics_of(connector, meta, request)

    async def get_task_logs(
        self, request: pb.GetTaskLogsRequest
    ) -> AsyncIterator[pb.GetTaskLogsResponse]:
        connector = connector_for_category(self.registry, request.task_category)
        meta = await self.meta_to_act_on(connector, request.task_category, request.resource_meta)
        async for response in logs_of(connector, meta, request):
            yield response

    async def meta_to_act_on(
        self, connector: AsyncConnector[Any], category: pb.TaskCategory | None, data: bytes
    ) -> ResourceMeta:
        """The connector's meta for a client's bytes. Errors: InvalidArgument."""
        return decode_meta(connector, data)


class DirectService(StatelessAnswers):
    """Calls the connector on every RPC and remembers nothing (Flyte's own behaviour)."""

    def answer_now(
        self, task_type: str, version: int, resource_meta: bytes, credentials: Mapping[str, str]
    ) -> bytes | None:
        return None  # every GetTask asks the connector

    async def create_task(self, request: pb.CreateTaskRequest) -> pb.CreateTaskResponse:
        template = request.template
        if template is None or not template.type:
            raise InvalidArgument("template with a task type is required")
        connector = connector_for_type(self.registry, template.type, template.task_type_version)
        meta = await call_connector(
            connector,
            "create",
            connector.create(
                task_template=template,
                output_prefix=request.output_prefix,
                inputs=native_inputs(request.inputs),
                task_execution_metadata=request.task_execution_metadata,
                **connection_kwargs(request.connection),
            ),
        )
        if not isinstance(meta, ResourceMeta):
            raise ConnectorFailed(
                f"{connector.name} create returned {type(meta).__name__}, not a ResourceMeta"
            )
        return pb.CreateTaskResponse(resource_meta=meta.encode())

    async def get_task(self, request: pb.GetTaskRequest) -> pb.GetTaskResponse:
        connector = connector_for_category(self.registry, request.task_category)
        meta = decode_meta(connector, request.resource_meta)
        resource = await call_connector(
            connector, "get", connector.get(meta, **connection_kwargs(request.connection))
        )
        return pb.GetTaskResponse(resource=resource_to_proto(resource, connector=connector.name))

    async def delete_task(self, request: pb.DeleteTaskRequest) -> pb.DeleteTaskResponse:
        connector = connector_for_category(self.registry, request.task_category)
        meta = decode_meta(connector, request.resource_meta)
        await call_connector(
            connector, "delete", connector.delete(meta, **connection_kwargs(request.connection))
        )
        return pb.DeleteTaskResponse()


async def metrics_of(
    connector: AsyncConnector[Any], meta: ResourceMeta, request: pb.GetTaskMetricsRequest
) -> pb.GetTaskMetricsResponse:
    """Errors: Unimplemented, ConnectorFailed."""
    response = await call_connector(
        connector,
        "get_metrics",
        connector.get_metrics(
            meta,
            queries=list(request.queries),
            start_time=request.start_time,
            end_time=request.end_time,
            step=request.step,
        ),
    )
    if not isinstance(response, pb.GetTaskMetricsResponse):
        raise ConnectorFailed(f"{connector.name} get_metrics returned {type(response).__name__}")
    return response


async def logs_of(
    connector: AsyncConnector[Any], meta: ResourceMeta, request: pb.GetTaskLogsRequest
) -> AsyncIterator[pb.GetTaskLogsResponse]:
    """The connector's logs as a stream, whether it returns one response or an iterator.

    Errors: Unimplemented, ConnectorFailed (also mid-stream).
    """
    kwargs: dict[str, Any] = {"token": request.token}
    if request.lines:
        kwargs["lines"] = request.lines
    try:
        result = connector.get_logs(meta, **kwargs)
    except NotImplementedError as exc:
        raise Unimplemented(str(exc) or f"{connector.name} does not provide logs") from None
    if inspect.isawaitable(result):
        yield await call_connector(connector, "get_logs", result)
        return
    if not hasattr(result, "__anext__"):
        raise ConnectorFailed(f"{connector.name} get_logs returned {type(result).__name__}")
    iterator: AsyncIterator[pb.GetTaskLogsResponse] = result
    while True:
        try:
            response = await call_connector(connector, "get_logs", iterator.__anext__())
        except StopAsyncIteration:
            return
        yield response
