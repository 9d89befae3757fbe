"""The health probe's client: ``python -m supervisor health``.

It asks ``grpc.health.v1.Health/Check`` for the server's overall status (readiness; or a
named service's, ``--service liveness`` for liveness) with grpclib, on a
short-lived asyncio loop of its own (``asyncio.run``): the probe is a separate process, not
part of the service, whose asyncio lives in the ``edge`` package. grpclib's health messages are
imported only when a check runs: they share protobuf's default descriptor pool with any
other copy of ``grpc/health/v1``, so merely importing this module must not register them.
"""

from __future__ import annotations

import asyncio

from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

__all__ = ["check_health", "health_status", "split_address"]


async def health_status(address: str, service: str = "") -> str:
    """The status of ``service`` (the whole server: "") at ``HOST:PORT``: SERVING,
    NOT_SERVING, UNKNOWN, ...

    Errors: OSError (refused, unreachable), GRPCError, StreamTerminatedError, ProtocolError;
    ValueError for an address that is not HOST:PORT.
    """
    from grpclib.client import Channel
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    host, port = split_address(address)
    channel = Channel(host, port)
    try:
        response = await HealthStub(channel).Check(HealthCheckRequest(service=service))
    finally:
        channel.close()
    name: str = HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def check_health(address: str, *, timeout: float, service: str = "") -> tuple[bool, str]:
    """``(serving, text)``: serving only when the server answers SERVING for ``service``
    (the whole server: "") within ``timeout``."""

    async def bounded() -> str:
        async with asyncio.timeout(timeout):
            return await health_status(address, service)

    try:
        status = asyncio.run(bounded())
    except TimeoutError:
        return False, f"{address}: no answer within {timeout:g}s"
    except (OSError, GRPCError, StreamTerminatedError, ProtocolError, ValueError) as exc:
        return False, f"{address}: {type(exc).__name__}: {exc}"
    return status == "SERVING", f"{address}: {status}"


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``. Errors: ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)
