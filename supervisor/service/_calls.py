"""Calls into a connector, with what it raises mapped to the service's errors."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from connectors import AsyncConnector, ResourceMeta
from flyteproto.flyteidl2 import connector as pb

from .._errors import ConnectorFailed, ServiceError, Unimplemented, connector_failed

__all__ = ["call_connector", "logs_of", "metrics_of"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


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
        raise connector_failed(connector.name, operation, exc) from exc


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
