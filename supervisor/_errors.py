"""Domain errors of the service. The gRPC edge maps each to a status code, in one place."""

from __future__ import annotations

__all__ = [
    "ConnectorFailed",
    "InvalidArgument",
    "NotFound",
    "ServiceError",
    "Unavailable",
    "Unimplemented",
    "connector_failed",
]


class ServiceError(Exception):
    """An error a caller should see, with a message that says what was wrong."""


class NotFound(ServiceError):
    """Unknown task type or connector name."""


class InvalidArgument(ServiceError):
    """Malformed request or undecodable resource_meta."""


class ConnectorFailed(ServiceError):
    """The connector raised; the message carries its error."""


class Unimplemented(ServiceError):
    """The connector does not provide this (metrics, logs)."""


class Unavailable(ServiceError):
    """The service cannot take the call now (shutting down); the caller may retry."""


def connector_failed(connector: str, operation: str, exc: BaseException) -> ConnectorFailed:
    """What a caller sees when connector ``connector``'s ``operation`` raised ``exc``.

    The one place where a connector's exception becomes ConnectorFailed (the supervisor's
    actors and the stateless service both come here); the caller chains ``exc``.
    """
    return ConnectorFailed(f"{connector} {operation} failed: {str(exc) or type(exc).__name__}")
