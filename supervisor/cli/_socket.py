"""The gRPC port, bound by ``serve`` before anything else starts (and held by ``--workers``)."""

from __future__ import annotations

import socket

from ._errors import EXIT_PORT, UserError, port_message

__all__ = ["bind_port"]


def bind_port(host: str, port: int, *, reuse_address: bool, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``0``: a free port), not listened on.

    ``reuse_port``: ``SO_REUSEPORT``, so that the workers of ``--workers`` share the port.
    Errors: UserError, with the exit code for a port in use.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserError(f"cannot serve gRPC on {host}:{port}: {exc}", EXIT_PORT) from exc
    try:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(port_message("gRPC", host, port, exc), EXIT_PORT) from exc
    return sock
