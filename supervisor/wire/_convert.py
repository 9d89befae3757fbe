"""Conversions between request/response messages and what connectors take and give."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from connectors import (
    AsyncConnector,
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

from .._errors import ConnectorFailed, InvalidArgument

__all__ = [
    "connection_kwargs",
    "decode_meta",
    "native_inputs",
    "require_connection",
    "resource_to_proto",
]


def require_connection(connector: AsyncConnector[Any], kwargs: Mapping[str, str]) -> None:
    """Refuse a CreateTask whose connection lacks a secret (or config) ``create`` requires.

    Errors: InvalidArgument naming the missing ``connection.secrets`` keys.
    """
    required = _REQUIRED.get(type(connector))
    if required is None:
        required = _REQUIRED[type(connector)] = connector.required_connection_keys()
    missing = sorted(required.difference(kwargs))
    if missing:
        keys = ", ".join(repr(key) for key in missing)
        plural = len(missing) > 1
        raise InvalidArgument(
            f"missing connection.secrets key{'s' if plural else ''} {keys}: "
            f"{connector.name}'s create requires {'them' if plural else 'it'}"
        )


#: Connector class -> the keywords its create requires (signatures do not change).
_REQUIRED: dict[type, frozenset[str]] = {}


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
