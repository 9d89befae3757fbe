"""What ``supervisor/edge/_grpclib.py`` takes from grpclib's private parts, checked against the
installed grpclib: an upgrade that renames or reshapes any of it fails here, loudly.
"""

from __future__ import annotations

import asyncio
import inspect
import socket

import grpclib.protocol
import grpclib.server
import grpclib.utils
import trio
import trio_asyncio
from grpclib.server import Server

from supervisor.edge import Codec


def test_server_builds_each_connection_with_an_overridable_protocol_factory() -> None:
    factory = inspect.signature(Server._protocol_factory)
    assert list(factory.parameters) == ["self"]
    protocol = inspect.signature(grpclib.protocol.H2Protocol.__init__)
    assert list(protocol.parameters) == ["self", "handler", "config", "h2_config"]
    for hook in ("connection_made", "data_received", "connection_lost"):
        assert hook in vars(grpclib.protocol.H2Protocol)
    # The calls open on a connection, read by the idle check.
    assert "self.processor = EventsProcessor(" in inspect.getsource(
        grpclib.protocol.H2Protocol.connection_made
    )
    assert "self._connection = connection" in inspect.getsource(
        grpclib.protocol.Connection.__init__
    )
    assert "self.streams: _Streams = {}" in inspect.getsource(
        grpclib.protocol.EventsProcessor.__init__
    )


def test_server_start_takes_a_socket_and_keeps_its_asyncio_server() -> None:
    assert "sock" in inspect.signature(Server.start).parameters
    source = inspect.getsource(Server.start)
    assert "self._server = await self._loop.create_server(" in source
    assert "self._protocol_factory" in source


def test_stream_exposes_what_recv_message_reads() -> None:
    init = inspect.getsource(grpclib.server.Stream.__init__)
    for attribute in ("self._stream = stream", "self._codec = codec", "self._recv_type ="):
        assert attribute in init
    read = inspect.getsource(grpclib.protocol.Stream.recv_data)
    assert "self.buffer.read(size)" in read
    # A stream that ends inside a read: grpclib's Buffer raises AssertionError, caught by us.
    assert "raise AssertionError('Received less data than expected')" in inspect.getsource(
        grpclib.protocol.Buffer.read
    )


async def test_a_started_server_on_our_socket_has_the_asyncio_server_we_close() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    async with trio_asyncio.open_loop():
        server = Server([], codec=Codec())
        await trio_asyncio.aio_as_trio(server.start)(sock=sock)
        listener = server._server
        assert listener is not None
        assert isinstance(listener, asyncio.Server)
        assert listener.sockets[0].getsockname() == sock.getsockname()
        server.close()
        await trio_asyncio.aio_as_trio(server.wait_closed)()
    await trio.lowlevel.checkpoint()


def test_a_reset_stream_is_handled_as_cancellation_and_logged_at_info() -> None:
    handler = inspect.getsource(grpclib.server.request_handler)
    # a handler that ends with CancelledError after a reset is "Request was cancelled" (info)
    assert "log.info('Request was cancelled: %s', err)" in handler
    assert "log.info('Deadline exceeded')" in handler
    assert "self.cancel_failed = exc_type is not asyncio.CancelledError" in inspect.getsource(
        grpclib.utils.Wrapper.__exit__
    )


def test_configuration_has_the_keepalive_fields_and_a_stream_resets_with_a_code() -> None:
    from grpclib.config import Configuration

    fields = set(Configuration.__dataclass_fields__)
    assert {
        "_keepalive_time",
        "_keepalive_timeout",
        "_keepalive_permit_without_calls",
        "_http2_max_pings_without_data",
        "_http2_min_sent_ping_interval_without_data",
    } <= fields
    assert list(inspect.signature(grpclib.protocol.Stream.reset).parameters) == [
        "self",
        "error_code",
    ]
    # a handler whose stream was reset by us: grpclib sends no trailers, swallows the error
    assert "self._cancel_done" in inspect.getsource(grpclib.server.Stream.__aexit__)
