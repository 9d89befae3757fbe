"""Which connector a request names: registry look-ups with the service's errors."""

from __future__ import annotations

from typing import Any

from connectors import AsyncConnector, ConnectorNotFound, ConnectorRegistry
from flyteproto.flyteidl2 import connector as pb

from .._errors import InvalidArgument, NotFound

__all__ = ["connector_for_category", "connector_for_type"]


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
