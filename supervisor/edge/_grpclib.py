"""Every use of grpclib's private parts, in one place.

grpclib has public hooks for most of what we need (``Server.start(sock=...)``: we bind the
listening socket, so the port is ours to know); for the rest there are none:
- ``Server._protocol_factory``: overridden so that each connection's writes are batched;
- ``H2Protocol.processor.streams``, ``connection._connection``: the calls open on a
  connection and its h2 state (an idle connection is sent GOAWAY and closed);
- ``Server._server``: the asyncio server, closed to stop accepting before a drain;
- ``Stream._stream``, ``_codec``, ``_recv_type``: read by ``recv_message``, which frames the
  request itself so that sizes are bounded before the bytes are buffered and framing
  mistakes get a precise status instead of an assertion;
- ``Configuration``'s experimental ``_keepalive_*`` and ``_http2_*`` ping fields: the
  server's keepalive pings (``keepalive_config``);
- ``Stream._stream.reset`` and ``Stream._cancel_done``: ``reset_stream`` resets with an
  error code of ours (grpclib's public ``cancel`` sends NO_ERROR, which clients read as
  INTERNAL);
- what a reset stream raises (``CLIENT_GONE``) and the lines grpclib's server logs for a
  client that went away (``quiet_client_gone``: the edge logs one debug line of its own).

``tests/test_grpclib_contract.py`` checks each of these against the installed grpclib, so
an upgrade that changes them fails loudly there, not quietly in production.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.protocol import H2Protocol
from grpclib.server import Server, Stream
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError

__all__ = [
    "CLIENT_GONE",
    "BatchingServer",
    "bind",
    "keepalive_config",
    "quiet_client_gone",
    "recv_bytes",
    "recv_message",
    "reset_stream",
    "stop_accepting",
]

_log = logging.getLogger(__name__)

#: What a send on a stream the client reset raises (h2's closed stream, grpclib's own).
CLIENT_GONE = (StreamClosedError, StreamTerminatedError)

#: How grpclib's server logs a call whose client went away (info): not our server's news.
_CLIENT_GONE_LINES = ("Request was cancelled", "Deadline exceeded")


def _not_client_gone(record: logging.LogRecord) -> bool:
    return not (record.levelno == logging.INFO and str(record.msg).startswith(_CLIENT_GONE_LINES))


def quiet_client_gone() -> None:
    """Drop grpclib's info lines for calls whose client went away (idempotent)."""
    logging.getLogger("grpclib.server").addFilter(_not_client_gone)


_PREFIX = struct.Struct(">?I")  # gRPC message prefix: compressed flag, length


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket for ``Server.start(sock=...)`` (``port`` 0: any free port)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(100)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: The longest a keepalive ping may go unanswered before its connection is closed.
MAX_KEEPALIVE_TIMEOUT = 20.0


def keepalive_config(interval: float | None) -> Configuration:
    """grpclib's server configuration: a PING every ``interval`` seconds (None: none).

    Pings go to every connection, open calls or not, data sent or not; one not answered
    within ``interval`` (at most ``MAX_KEEPALIVE_TIMEOUT``) closes its connection.
    """
    if interval is None:
        return Configuration(_keepalive_time=None)
    return Configuration(
        _keepalive_time=interval,
        _keepalive_timeout=min(interval, MAX_KEEPALIVE_TIMEOUT),
        _keepalive_permit_without_calls=True,
        _http2_max_pings_without_data=0,
        _http2_min_sent_ping_interval_without_data=interval,
    )


def stop_accepting(server: Server) -> None:
    """Stop listening; connections already open go on (grpclib's ``close`` ends them)."""
    listener = server._server
    if listener is not None:
        listener.close()


async def recv_message(stream: Stream[Any, Any], max_bytes: int) -> Any:
    """The one request message of a unary call, framed by us, decoded by the stream's codec.

    Errors: as ``recv_bytes``; the codec's (INVALID_ARGUMENT for a malformed message).
    """
    return stream._codec.decode(await recv_bytes(stream, max_bytes), stream._recv_type)


async def recv_bytes(stream: Stream[Any, Any], max_bytes: int) -> bytes:
    """The one request message of a unary call, framed by us, as received (not decoded).

    Errors (GRPCError): UNIMPLEMENTED for a compressed message; RESOURCE_EXHAUSTED for one
    over ``max_bytes`` (refused from its prefix, before its body is read);
    INVALID_ARGUMENT for no message, a cut-short prefix or body.
    """
    h2_stream = stream._stream
    try:
        prefix = await h2_stream.recv_data(_PREFIX.size)
    except AssertionError:  # grpclib's Buffer: the stream ended inside the read
        raise GRPCError(Status.INVALID_ARGUMENT, "request ends inside its message prefix") from None
    if not prefix:
        raise GRPCError(Status.INVALID_ARGUMENT, "request has no message")
    compressed, length = _PREFIX.unpack(prefix)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    if length > max_bytes:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"request message of {length} bytes is over the limit of {max_bytes}",
        )
    try:
        data: bytes = await h2_stream.recv_data(length)
    except AssertionError:
        data = b""
    if len(data) != length:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"request message is shorter than its length prefix of {length} bytes",
        )
    return data


async def reset_stream(
    stream: Stream[Any, Any], code: ErrorCodes = ErrorCodes.ENHANCE_YOUR_CALM
) -> None:
    """RST_STREAM a call (ENHANCE_YOUR_CALM: gRPC clients see RESOURCE_EXHAUSTED).

    grpclib then sends nothing more for it (no trailers) and takes the handler's exception
    as handled."""
    await stream._stream.reset(code)
    stream._cancel_done = True


class BatchingServer(Server):
    """grpclib's Server, sending what its connections write in one loop iteration at once.

    Hot path: grpclib writes a unary response in three pieces (headers, message, trailers),
    each a send(2) of its own: about a fifth of the CPU of a GetTask. Under load, many
    responses are ready in one iteration of the loop; their bytes go out in one send.

    Also closes connections idle (no call open, nothing received) for ``idle_timeout``
    seconds (None: never).
    """

    idle_timeout: float | None = None

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        return _BatchingProtocol(
            protocol.handler, protocol.config, protocol.h2_config, idle_timeout=self.idle_timeout
        )


class _BatchingProtocol(H2Protocol):
    def __init__(self, *args: Any, idle_timeout: float | None) -> None:
        super().__init__(*args)
        self._idle_timeout = idle_timeout
        self._last_active = 0.0
        self._idle_check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        super().connection_made(BatchingTransport(transport))
        if self._idle_timeout is not None:
            loop = asyncio.get_running_loop()
            self._last_active = loop.time()
            self._idle_check = loop.call_later(self._idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._idle_check is not None:
            self._last_active = asyncio.get_running_loop().time()
        super().data_received(data)

    def _check_idle(self) -> None:
        assert self._idle_timeout is not None
        loop = asyncio.get_running_loop()
        if self.processor.streams:
            self._last_active = loop.time()  # a call is open: not idle
        idle_for = loop.time() - self._last_active
        if idle_for >= self._idle_timeout:
            _log.info("closing a connection idle for %.0fs", idle_for)
            self._idle_check = None
            self.connection._connection.close_connection()  # GOAWAY: clients go elsewhere
            self.connection.flush()
            self.processor.close("Idle timeout")
            return
        self._idle_check = loop.call_later(self._idle_timeout - idle_for, self._check_idle)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None
        super().connection_lost(exc)


class BatchingTransport(asyncio.Transport):
    """Buffers writes until the end of the loop iteration, then writes them at once, in order.

    Everything else is the wrapped transport's (flow control included: its buffer fills, and
    it pauses the protocol, one iteration later than it would have).
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()
