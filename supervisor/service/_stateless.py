"""The RPCs that need no job state, shared by both services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectors import AsyncConnector, ConnectorNotFound, ConnectorRegistry, ResourceMeta
from flyteproto.flyteidl2 import connector as pb

from .._errors import NotFound
from ..wire import connector_for_category, decode_meta
from ._calls import logs_of, metrics_of

__all__ = ["StatelessAnswers"]


class StatelessAnswers:
    """The RPCs that need no job state, answered from a registry: ListConnectors and
    GetConnector from the connectors' metadata; GetTaskMetrics and GetTaskLogs straight from
    the connector (the supervisor keeps neither)."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry

    def journal_fault(self) -> str | None:
        return None  # no journal (the Supervisor overrides this)

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
