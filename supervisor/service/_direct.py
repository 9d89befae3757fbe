"""The stateless service: one connector call per RPC, nothing remembered."""

from __future__ import annotations

from collections.abc import Mapping

from connectors import ResourceMeta
from flyteproto.flyteidl2 import connector as pb

from .._errors import ConnectorFailed, InvalidArgument
from ..wire import (
    connection_kwargs,
    connector_for_category,
    connector_for_type,
    decode_meta,
    native_inputs,
    require_connection,
    resource_to_proto,
)
from ._calls import call_connector
from ._stateless import StatelessAnswers

__all__ = ["DirectService"]


class DirectService(StatelessAnswers):
    """Calls the connector on every RPC and remembers nothing (Flyte's own behaviour)."""

    def answer_now(
        self, task_type: str, version: int, resource_meta: bytes, credentials: Mapping[str, str]
    ) -> bytes | None:
        return None  # every GetTask asks the connector

    async def create_task(
        self, request: pb.CreateTaskRequest, *, received: bytes | None = None
    ) -> pb.CreateTaskResponse:
        template = request.template
        if template is None or not template.type:
            raise InvalidArgument("template with a task type is required")
        connector = connector_for_type(self.registry, template.type, template.task_type_version)
        require_connection(connector, connection_kwargs(request.connection))
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
