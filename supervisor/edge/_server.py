"""Run the gRPC server inside a Trio program, and shut it down gracefully.

Shape: (inside a trio-asyncio loop that the caller opened) start grpclib on it, mark
health SERVING, wait for
SIGTERM/SIGINT (or ``stop``; health is NOT_SERVING meanwhile while the service waits out a
journal fault), then drain: mark NOT_SERVING, refuse new calls, stop
listening, wait up to ``grace`` seconds for calls under way, close grpclib. Our shutdown
never touches external jobs. "Health" here is readiness: the ``LIVENESS_SERVICE`` name
answers SERVING throughout (``_edge.build_handlers``).
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
import trio_asyncio
from grpclib.health.check import ServiceStatus
from grpclib.server import Server

from ..observe import Metrics
from ..service import ConnectorService
from ._edge import DEFAULT_MAX_MESSAGE_BYTES, Codec, Edge, build_handlers
from ._grpclib import (
    BatchingServer,
    bind,
    keepalive_config,
    quiet_client_gone,
    stop_accepting,
)

__all__ = ["Listening", "serve_grpc"]

_log = logging.getLogger(__name__)

#: How often the drain checks whether calls under way have finished.
_DRAIN_CHECK_INTERVAL = 0.05
#: How often health looks whether the service waits out a journal fault.
_HEALTH_CHECK_INTERVAL = 0.5


@dataclass(frozen=True)
class Listening:
    host: str
    port: int


async def serve_grpc(
    service: ConnectorService,
    *,
    host: str,
    port: int,
    grace: float,
    metrics: Metrics | None = None,
    sock: socket.socket | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idle_timeout: float | None = None,
    stream_send_timeout: float | None = None,
    keepalive: float | None = None,
    tls: ssl.SSLContext | None = None,
    halt: Callable[[], Awaitable[str]] | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM/SIGINT or cancellation; then drain and return.

    Must run inside ``trio_asyncio.open_loop()`` (the caller opens it, so that asyncio-native
    connectors can share the loop).

    ``sock``: a socket the caller bound (and listens on) already, so that a port in use is
    known before anything else starts; ``host`` and ``port`` then only name it in logs.

    ``halt``, awaited beside serving, returns a reason when the service cannot go on (its
    journal is lost): from then on health is NOT_SERVING and every call is UNAVAILABLE
    with that reason, until the signal.

    ``idle_timeout``: close connections with no call open that send nothing for so long;
    ``stream_send_timeout``: end a stream whose client leaves its window shut for so long;
    ``keepalive``: PING every connection this often, close it when a ping goes unanswered
    (seconds; None: never).

    Cancellation: a cancel from outside skips the signal wait and drains (shielded, bounded
    by ``grace``).
    """
    quiet_client_gone()
    edge = Edge(
        service,
        metrics,
        max_message_bytes=max_message_bytes,
        stream_send_timeout=stream_send_timeout,
    )
    ready = ServiceStatus()
    server = BatchingServer(
        build_handlers(edge, ready), codec=Codec(), config=keepalive_config(keepalive)
    )
    server.idle_timeout = idle_timeout
    if sock is None:
        sock = bind(host, port)
    sock.setblocking(False)
    listening = Listening(host, int(sock.getsockname()[1]))
    await trio_asyncio.aio_as_trio(server.start)(sock=sock, ssl=tls)
    ready.set(True)
    _log.info("listening on %s:%d", listening.host, listening.port)
    task_status.started(listening)
    try:
        async with trio.open_nursery() as nursery:
            watching = trio.CancelScope()  # the journal-fault watch, until a halt
            nursery.start_soon(_watch_journal, service, ready, watching)
            if halt is not None:
                nursery.start_soon(_halt_when, halt, edge, ready, watching)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    _log.info("received %s: shutting down", signal.Signals(signum).name)
                    break
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _drain(server, edge, ready, grace)


async def _watch_journal(
    service: ConnectorService, ready: ServiceStatus, watching: trio.CancelScope
) -> None:
    """Health NOT_SERVING while the service waits out a journal fault, SERVING again after.

    Looks every ``_HEALTH_CHECK_INTERVAL`` (a probe asks every few seconds at most)."""
    fault: str | None = None
    with watching:
        while True:
            await trio.sleep(_HEALTH_CHECK_INTERVAL)
            now = service.journal_fault()
            if (now is None) != (fault is None):
                if now is not None:
                    _log.error("health NOT_SERVING: %s", now)
                else:
                    _log.info("health SERVING: the journal takes writes again")
                ready.set(now is None)
            fault = now


async def _halt_when(
    halt: Callable[[], Awaitable[str]],
    edge: Edge,
    ready: ServiceStatus,
    watching: trio.CancelScope,
) -> None:
    reason = await halt()
    watching.cancel()  # a lost journal does not come back: health stays NOT_SERVING
    ready.set(False)
    edge.drain(f"not serving: {reason}")
    _log.error("stopped serving: %s (health NOT_SERVING, every call UNAVAILABLE)", reason)


async def _drain(server: Server, edge: Edge, ready: ServiceStatus, grace: float) -> None:
    ready.set(False)
    edge.drain()
    stop_accepting(server)
    with trio.move_on_after(grace) as scope:
        # The count lives on the asyncio side of the bridge: look, don't wait on it.
        while edge.in_flight:  # noqa: ASYNC110
            await trio.sleep(_DRAIN_CHECK_INTERVAL)
    if scope.cancelled_caught:
        _log.warning(
            "%d call(s) still running after %.1fs grace: cancelling", edge.in_flight, grace
        )
    server.close()
    await trio_asyncio.aio_as_trio(server.wait_closed)()
