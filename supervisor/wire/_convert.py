"""Conversions between request/response messages and what connectors take and give."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from connectors import (
    AsyncConnector,
    ConnectorNotFound,
    ConnectorRegistry,
    InvalidResourceMeta,
    LiteralConversionError,
    Resource,
    ResourceMeta,
    inputs_to_native,
    native_to_outputs,
)
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import TaskExecutionPhase
from flyteproto.flyteidl2.task import Inputs
from flyteproto.google.protobuf import Struct

from .._errors import ConnectorFailed, InvalidArgument, NotFound

__all__ = [
    "connection_kwargs",
    "connector_for_category",
    "decode_meta",
    "native_inputs",
    "resource_to_proto",
]


class Credentials(Protocol):
    """A request's ``connection``: betterproto2's or the official (upb) message alike."""

    @property
    def secrets(self) -> Mapping[str, str]: ...

    @property
    def configs(self) -> Mapping[str, str]: ...


def connection_kwargs(connection: Credentials | None) -> dict[str, str]:
    """Secrets and configs of a request, as the keyword arguments a connector receives.

    As in flyte-sdk, configs win over secrets of the same name. An unset (upb) connection
    has neither.
    """
    if connection is None:
        return {}
    return {**connection.secrets, **connection.configs}


def connector_for_category(
    registry: ConnectorRegistry, category: pb.TaskCategory | None
) -> AsyncConnector[Any]:
    """Errors: InvalidArgument without a task category; NotFound for an unknown one."""
    if category is None or not category.name:
        raise InvalidArgument("task_category is required")
    return connector_for_type(registry, category.name, category.version)


def connector_for_type(registry: ConnectorRegistry, name: str, version: int) -> AsyncConnector[Any]:
    """Errors: NotFound."""
    try:
        return registry.get(name, version)
    except ConnectorNotFound as exc:
        raise NotFound(str(exc)) from None


def decode_meta(connector: AsyncConnector[Any], data: bytes) -> ResourceMeta:
    """Errors: InvalidArgument naming what is wrong with the bytes."""
    if not data:
        raise InvalidArgument("resource_meta is empty")
    try:
        return connector.metadata_type.decode(data)
    except InvalidResourceMeta as exc:
        raise InvalidArgument(f"resource_meta for {connector.name}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"resource_meta for {connector.name} does not decode: {exc}"
        ) from None
    except RecursionError:
        raise InvalidArgument(
            f"resource_meta for {connector.name} does not decode: nested too deeply"
        ) from None


def native_inputs(inputs: Inputs | None) -> dict[str, Any]:
    """Errors: InvalidArgument for literals that have no native form."""
    try:
        return inputs_to_native(inputs)
    except LiteralConversionError as exc:
        raise InvalidArgument(f"inputs: {exc}") from None


def resource_to_proto(resource: Resource, *, connector: str) -> pb.Resource:
    """Errors: ConnectorFailed when the connector's outputs or custom_info don't convert."""
    if not isinstance(resource, Resource):
        raise ConnectorFailed(
            f"{connector} returned {type(resource).__name__} from get, not a Resource"
        )
    try:
        outputs = native_to_outputs(resource.outputs) if resource.outputs else None
        custom_info = (
            Struct.from_dict(json.loads(json.dumps(resource.custom_info)))
            if resource.custom_info
            else None
        )
    except (LiteralConversionError, TypeError, ValueError) as exc:
        raise ConnectorFailed(
            f"{connector} returned a Resource that does not convert: {exc}"
        ) from exc
    return pb.Resource(
        phase=TaskExecutionPhase(resource.phase),
        message=resource.message or "",
        log_links=list(resource.log_links or []),
        outputs=outputs,
        custom_info=custom_info,
    )
