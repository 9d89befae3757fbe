"""The gRPC edge's handlers: where the service's requests run on asyncio.

grpclib serves HTTP/2 on the asyncio loop that trio-asyncio runs inside our Trio program.
Each handler decodes the request (a malformed one is INVALID_ARGUMENT), crosses to Trio
once with ``trio_as_aio`` to call the ``ConnectorService``, and maps the domain errors to
gRPC status codes in ``_status_of`` — the one place where that mapping lives. GetTask of a
live job does not cross: ``ConnectorService.answer_now`` hands back its encoded answer.

Handlers are written against grpclib's ``Stream`` (not the generated service bases) so that
decoding errors, draining and deadlines are ours to handle. Every call passes through
``Edge._call``, which also measures it (Flyte's ``flyte_connector_*`` metrics).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio_asyncio
from flyteidl2.connector import connector_pb2 as official
from google.protobuf.unknown_fields import UnknownFieldSet
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.reflection.service import ServerReflection
from grpclib.server import Stream

from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import Connection

from .._errors import (
    ConnectorFailed,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
    Unimplemented,
)
from ..observe import Metrics, RpcCall
from ..service import ConnectorService
from ..wire import connection_kwargs
from ._grpclib import CLIENT_GONE, recv_bytes, recv_message, reset_stream
from ._messages import bounded

if TYPE_CHECKING:
    from grpclib.health.check import ServiceStatus

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "LIVENESS_SERVICE", "Codec", "Edge", "build_handlers"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_ASYNC = "/flyteidl2.connector.AsyncConnectorService/"
_METADATA = "/flyteidl2.connector.ConnectorMetadataService/"

#: The health service name for liveness probes: SERVING for as long as the process answers,
#: through journal outages and drains. Readiness is the whole server's status (name ""),
#: NOT_SERVING while the journal refuses writes: a probe that restarts on it would restart
#: the pod in every database outage.
LIVENESS_SERVICE = "liveness"

#: The largest request message accepted, as in gRPC (``serve --max-message-bytes``).
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_STATUS: dict[type[ServiceError], Status] = {
    NotFound: Status.NOT_FOUND,
    InvalidArgument: Status.INVALID_ARGUMENT,
    ConnectorFailed: Status.INTERNAL,
    Unimplemented: Status.UNIMPLEMENTED,
    Unavailable: Status.UNAVAILABLE,
}


def _status_of(exc: ServiceError) -> Status:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return Status.INTERNAL


class Codec(CodecBase):
    """Protobuf wire codec for betterproto2 and protobuf-runtime messages alike.

    A request that does not parse is INVALID_ARGUMENT naming the message type. betterproto2
    is lenient (a length-delimited field cut short parses as the bytes that are there), so
    our requests are first checked by the official parser (upb: microseconds per request).
    A handler may declare an official message type (parsed by upb alone) and may send
    ``bytes`` it encoded beforehand (passed through).
    """

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, bytes):
            return message  # already encoded (a GetTask answer kept as bytes)
        if not isinstance(message, message_type):
            raise TypeError(f"message must be {message_type!r}, not {type(message)!r}")
        data: bytes = message.SerializeToString()
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            strict = _strict_parser(message_type)
            if strict is not None:
                check_wire_types(strict.FromString(data))
            return message_type.FromString(data)
        except GRPCError:
            raise
        except Exception as exc:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"malformed {message_type.__name__}: {type(exc).__name__}: {exc}",
            ) from None


def check_wire_types(message: Any) -> None:
    """Refuse a known field sent with the wrong wire type (INVALID_ARGUMENT, naming it).

    The official parser keeps such a field as an unknown one; betterproto2 would store the
    value under the field (an int in a message field) and fail later, far from the cause.
    Walks every message set in ``message`` (an official one).
    """
    descriptor = message.DESCRIPTOR
    for unknown in UnknownFieldSet(message):
        field = descriptor.fields_by_number.get(unknown.field_number)
        if field is not None:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"malformed {descriptor.full_name}: field {field.name} "
                f"(number {field.number}) has the wrong wire type",
            )
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    check_wire_types(item)
        elif field.is_repeated:
            for item in value:
                check_wire_types(item)
        else:
            check_wire_types(value)


@functools.cache
def _strict_parser(message_type: type) -> Any:
    """The official protobuf class for one of our generated (top-level) message types."""
    module = message_type.__module__
    if not module.startswith(_GENERATED):
        return None
    from google.protobuf import descriptor_pool, message_factory

    full_name = f"{module.removeprefix(_GENERATED)}.{message_type.__name__}"
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor)


_GENERATED = "flyteproto."
_CODEC = Codec()


class Edge:
    """Serves AsyncConnectorService and ConnectorMetadataService for a ConnectorService."""

    def __init__(
        self,
        service: ConnectorService,
        metrics: Metrics | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        stream_send_timeout: float | None = None,
    ) -> None:
        self._service = service
        self._max_message_bytes = max_message_bytes
        self._stream_send_timeout = stream_send_timeout
        self._metrics = metrics or Metrics()
        self._in_flight = 0
        self._draining = False
        self._refusal = "server is shutting down"

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def drain(self, reason: str = "server is shutting down") -> None:
        """Refuse new calls with UNAVAILABLE (``reason`` is the message); calls under way go
        on."""
        if not self._draining:
            self._refusal = reason
        self._draining = True

    @contextmanager
    def _call(self, method: str) -> Iterator[RpcCall]:
        """Every call goes through here: drain check, error mapping, metrics."""
        call = self._metrics.rpc(method)
        if self._draining:
            call.finished(Status.UNAVAILABLE)
            raise GRPCError(Status.UNAVAILABLE, self._refusal)
        self._in_flight += 1
        status = Status.CANCELLED  # unless it ends otherwise: the caller went away
        try:
            yield call
            status = Status.OK
        except ServiceError as exc:
            status = _status_of(exc)
            raise GRPCError(status, bounded(str(exc))) from None
        except GRPCError as exc:
            status = exc.status
            if exc.message is not None:
                raise GRPCError(status, bounded(exc.message), exc.details) from None
            raise
        except CLIENT_GONE:
            # The client reset the stream while we sent (its cancel or deadline), and the
            # cancel grpclib sent us was lost in a step that could not take it: end as a
            # cancelled task does, which is what grpclib expects of a reset stream.
            raise asyncio.CancelledError() from None
        except Exception:
            status = Status.INTERNAL
            _log.exception("unexpected error in %s", method)
            raise GRPCError(Status.INTERNAL, f"internal error in {method}") from None
        finally:
            self._in_flight -= 1
            call.finished(status)
            if status is Status.CANCELLED:
                _log.debug("%s: the client went away (cancelled, deadline or reset)", method)

    async def _unary(
        self, stream: Stream[Any, Any], method: str, fn: Callable[[Any], Awaitable[Any]]
    ) -> None:
        with self._call(method) as call:
            request = await recv_message(stream, self._max_message_bytes)
            call.received(request)
            response = await trio_asyncio.trio_as_aio(fn)(request)
        await stream.send_message(response)

    async def create_task(
        self, stream: Stream[pb.CreateTaskRequest, pb.CreateTaskResponse]
    ) -> None:
        # Hot path (every durable create): the bytes as received go along with the parsed
        # request, so that a request without secrets is journalled as it came, not encoded
        # again (betterproto2 encodes a request in about as long as it parses one).
        with self._call("CreateTask") as call:
            data = await recv_bytes(stream, self._max_message_bytes)
            request = _CODEC.decode(data, pb.CreateTaskRequest)
            call.received(request)
            create = functools.partial(self._service.create_task, received=data)
            response = await trio_asyncio.trio_as_aio(create)(request)
        await stream.send_message(response)

    async def get_task(self, stream: Stream[Any, Any]) -> None:
        # Hot path: Propeller polls every job every few seconds. The request arrives as the
        # official (upb) message, strictly parsed far faster than betterproto2 parses it;
        # a live job's answer is ready bytes, read without crossing to Trio (a Trio task per
        # call). Only the rest (journal lookups, adoption, errors) takes the full path.
        with self._call("GetTask") as call:
            request = await recv_message(stream, self._max_message_bytes)
            call.received(request)
            answer: bytes | pb.GetTaskResponse | None = self._service.answer_now(
                request.task_category.name,
                request.task_category.version,
                request.resource_meta,
                connection_kwargs(request.connection),
            )
            if answer is None:
                check_wire_types(request)
                full = pb.GetTaskRequest.parse(request.SerializeToString())
                answer = await trio_asyncio.trio_as_aio(self._service.get_task)(full)
        await stream.send_message(answer)

    async def delete_task(self, stream: Stream[Any, pb.DeleteTaskResponse]) -> None:
        # Hot path (every job's end): the request arrives as the official (upb) message,
        # strictly parsed in about a microsecond; its three fields are copied into ours
        # (betterproto2 would take ten times as long to parse it).
        with self._call("DeleteTask") as call:
            received = await recv_message(stream, self._max_message_bytes)
            check_wire_types(received)
            request = pb.DeleteTaskRequest(
                resource_meta=received.resource_meta,
                task_category=(
                    pb.TaskCategory(
                        name=received.task_category.name, version=received.task_category.version
                    )
                    if received.HasField("task_category")
                    else None
                ),
                connection=(
                    Connection.parse(received.connection.SerializeToString())
                    if received.HasField("connection")
                    else None
                ),
            )
            call.received(request)
            response = await trio_asyncio.trio_as_aio(self._service.delete_task)(request)
        await stream.send_message(response)

    async def get_task_metrics(
        self, stream: Stream[pb.GetTaskMetricsRequest, pb.GetTaskMetricsResponse]
    ) -> None:
        await self._unary(stream, "GetTaskMetrics", self._service.get_task_metrics)

    async def get_task_logs(
        self, stream: Stream[pb.GetTaskLogsRequest, pb.GetTaskLogsResponse]
    ) -> None:
        with self._call("GetTaskLogs") as call:
            request = await recv_message(stream, self._max_message_bytes)
            call.received(request)
            responses: AsyncIterator[pb.GetTaskLogsResponse] = trio_asyncio.trio_as_aio(
                self._service.get_task_logs(request)
            )
            # One response at a time, made only once the last one is sent: the window
            # the client opens paces the connector, and a stream holds one response.
            async for response in responses:
                await self._send_within(stream, response)

    async def _send_within(self, stream: Stream[Any, Any], response: Any) -> None:
        """Send one message of a stream, or reset the stream if its client opens no window
        for ``stream_send_timeout`` (ENHANCE_YOUR_CALM: the client sees RESOURCE_EXHAUSTED).

        A reset, not trailers: a client holds trailers back until it has read every message
        before them, and it frees what it buffered for the stream at once.
        """
        try:
            async with asyncio.timeout(self._stream_send_timeout):
                await stream.send_message(response)
        except TimeoutError:
            await reset_stream(stream)
            _log.info(
                "reset a stream whose client read nothing for %gs (--stream-send-timeout)",
                self._stream_send_timeout,
            )
            raise GRPCError(Status.RESOURCE_EXHAUSTED, "stream send timeout") from None

    async def list_connectors(
        self, stream: Stream[pb.ListConnectorsRequest, pb.ListConnectorsResponse]
    ) -> None:
        with self._call("ListConnectors"):
            await recv_message(stream, self._max_message_bytes)
            response = self._service.list_connectors()
        await stream.send_message(response)

    async def get_connector(
        self, stream: Stream[pb.GetConnectorRequest, pb.GetConnectorResponse]
    ) -> None:
        with self._call("GetConnector"):
            request = await recv_message(stream, self._max_message_bytes)
            response = self._service.get_connector(request.name)
        await stream.send_message(response)

    def async_service(self) -> _Mapped:
        u = Cardinality.UNARY_UNARY
        return _Mapped(
            {
                _ASYNC + "CreateTask": Handler(
                    self.create_task, u, pb.CreateTaskRequest, pb.CreateTaskResponse
                ),
                _ASYNC + "GetTask": Handler(
                    self.get_task, u, official.GetTaskRequest, pb.GetTaskResponse
                ),
                _ASYNC + "DeleteTask": Handler(
                    self.delete_task, u, official.DeleteTaskRequest, pb.DeleteTaskResponse
                ),
                _ASYNC + "GetTaskMetrics": Handler(
                    self.get_task_metrics, u, pb.GetTaskMetricsRequest, pb.GetTaskMetricsResponse
                ),
                _ASYNC + "GetTaskLogs": Handler(
                    self.get_task_logs,
                    Cardinality.UNARY_STREAM,
                    pb.GetTaskLogsRequest,
                    pb.GetTaskLogsResponse,
                ),
            }
        )

    def metadata_service(self) -> _Mapped:
        u = Cardinality.UNARY_UNARY
        return _Mapped(
            {
                _METADATA + "GetConnector": Handler(
                    self.get_connector, u, pb.GetConnectorRequest, pb.GetConnectorResponse
                ),
                _METADATA + "ListConnectors": Handler(
                    self.list_connectors, u, pb.ListConnectorsRequest, pb.ListConnectorsResponse
                ),
            }
        )


class _Mapped:
    """A grpclib servable made of a ready mapping of handlers."""

    def __init__(self, mapping: dict[str, Handler]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


def build_handlers(edge: Edge, ready: ServiceStatus) -> list[Any]:
    """Every servable: our two services, health and reflection. Health: the whole server
    (name "") and each service are SERVING while ``ready``; ``LIVENESS_SERVICE`` always."""
    # Registers the official descriptors in protobuf's default pool, which reflection reads.
    import flyteidl2.connector.service_pb2  # noqa: F401

    # Imported here, not above: grpclib's health descriptors clash with grpcio's
    # (grpc_health) in one process, and tests use the edge beside grpcio's health client.
    from grpclib.health.service import Health

    services: list[Any] = [edge.async_service(), edge.metadata_service()]
    checks: dict[Any, list[ServiceStatus]] = {service: [ready] for service in services}
    checks[_HealthName(LIVENESS_SERVICE)] = []  # no check: grpclib answers SERVING
    return ServerReflection.extend([*services, Health(checks)])


class _HealthName:
    """A name in the health service that is no servable (grpclib reads it off a mapping)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __mapping__(self) -> dict[str, None]:
        return {f"/{self._name}/": None}
