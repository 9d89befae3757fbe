"""One unmodified flyte-sdk connector, hosted as one of ours."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, Self, TypeVar, cast

import trio_asyncio

from flyteproto.flyteidl2.connector import (
    GetTaskLogsResponse,
    GetTaskMetricsResponse,
    TaskExecutionMetadata,
)
from flyteproto.flyteidl2.core import TaskTemplate

from .._connector import AsyncConnector, required_keywords
from .._errors import PermanentError
from .._resource import Resource
from ._convert import (
    official_metadata,
    official_template,
    ours,
    resource_bytes_async,
    resource_from_bytes,
    unrecognized_state_bytes,
)
from ._meta import FlyteSdkMeta, meta_type_for

__all__ = ["FlyteSdkConnector", "NoAsyncioLoop"]

_T = TypeVar("_T")

# Adapter classes by wrapped connector: one class per wrapped instance, so that loading a
# module twice finds the same class (the registry skips a connector of the same class).
_CLASSES: dict[int, tuple[Any, type[FlyteSdkConnector]]] = {}


class NoAsyncioLoop(RuntimeError):
    """A flyte-sdk connector was called outside a trio-asyncio loop."""


class FlyteSdkConnector(AsyncConnector[FlyteSdkMeta]):
    """Hosts one unmodified flyte-sdk ``flyte.connectors.AsyncConnector`` instance.

    ``FlyteSdkConnector(wrapped)`` returns an instance of a subclass made for ``wrapped``:
    its ``name``, ``task_type_name`` and ``task_type_version`` are the wrapped connector's,
    and its ``metadata_type`` is a FlyteSdkMeta bound to the wrapped ``metadata_type``, so
    ``resource_meta`` bytes are exactly the ones flyte-sdk's own service would return.

    Calls run the wrapped coroutines on the process's trio-asyncio loop (``python -m
    supervisor serve`` and ``run`` open it; tests and scripts open it with
    ``trio_asyncio.open_loop()``), with keyword arguments as flyte-sdk's own service passes
    them: official protobuf messages in, flyte-sdk ``Resource`` out (outputs converted by
    flyte-sdk's TypeEngine), connection secrets and configs as keyword arguments.
    ``inputs`` are our native values (see ``connectors._literals``), where flyte-sdk's
    service converts literals with its TypeEngine: the same for scalars, lists and maps;
    ``StructuredDatasetRef``/``BlobRef`` where it would give ``flyte.io`` objects.

    Options (keyword-only) override the supervisor's poll schedule for this connector.
    Errors: NoAsyncioLoop from any call made outside a trio-asyncio loop.
    """

    metadata_type: ClassVar[type[FlyteSdkMeta]] = FlyteSdkMeta
    #: flyte-sdk connectors get no idempotency key (their API has none).
    supports_idempotent_create = False

    def __new__(cls, wrapped: Any, **options: Any) -> Self:
        bound = cast(type[Self], _class_for(wrapped)) if cls is FlyteSdkConnector else cls
        return object.__new__(bound)

    def __init__(
        self,
        wrapped: Any,
        *,
        poll_interval: float | None = None,
        max_concurrent_calls: int | None = None,
        call_timeout: float | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.override_options(
            poll_interval=poll_interval,
            max_concurrent_calls=max_concurrent_calls,
            call_timeout=call_timeout,
        )

    def __repr__(self) -> str:
        return f"FlyteSdkConnector({self.wrapped!r})"

    def required_connection_keys(self) -> frozenset[str]:
        return required_keywords(self.wrapped.create)

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> FlyteSdkMeta:
        kwargs.pop("idempotency_key", None)
        wrapped_meta = await self._call(
            self.wrapped.create,
            task_template=official_template(task_template),
            output_prefix=output_prefix,
            inputs=inputs if inputs is not None else {},
            task_execution_metadata=official_metadata(task_execution_metadata),
            **kwargs,
        )
        return self.metadata_type.of(wrapped_meta)

    async def get(self, resource_meta: FlyteSdkMeta, **kwargs: Any) -> Resource:
        data = await self._call(self._get_async, self._unwrap(resource_meta), kwargs)
        return resource_from_bytes(data)

    async def _get_async(self, wrapped_meta: Any, kwargs: dict[str, Any]) -> bytes:
        # asyncio side: the wrapped get and flyte-sdk's conversion of its answer.
        try:
            resource = await self.wrapped.get(resource_meta=wrapped_meta, **kwargs)
        except ValueError as exc:
            data = unrecognized_state_bytes(exc, connector=self.name)
            if data is None:
                raise
            return data
        try:
            return await resource_bytes_async(resource, connector=self.name)
        except TypeError as exc:
            raise PermanentError(str(exc)) from exc

    async def delete(self, resource_meta: FlyteSdkMeta, **kwargs: Any) -> None:
        await self._call(self.wrapped.delete, resource_meta=self._unwrap(resource_meta), **kwargs)

    async def get_metrics(
        self, resource_meta: FlyteSdkMeta, **kwargs: Any
    ) -> GetTaskMetricsResponse:
        # As flyte-sdk's service: the resource meta only.
        response = await self._call(
            self.wrapped.get_metrics, resource_meta=self._unwrap(resource_meta)
        )
        result: GetTaskMetricsResponse = ours(response, GetTaskMetricsResponse)
        return result

    def get_logs(
        self, resource_meta: FlyteSdkMeta, **kwargs: Any
    ) -> AsyncIterator[GetTaskLogsResponse] | Any:
        # As flyte-sdk's service: the resource meta and the token; one response or a stream.
        result = self.wrapped.get_logs(
            resource_meta=self._unwrap(resource_meta), token=kwargs.get("token", "")
        )
        if inspect.isawaitable(result):
            return self._one_log(result)
        return self._log_stream(result)

    async def _one_log(self, awaitable: Awaitable[Any]) -> GetTaskLogsResponse:
        _require_loop(self.name)
        response = await trio_asyncio.aio_as_trio(awaitable)
        result: GetTaskLogsResponse = ours(response, GetTaskLogsResponse)
        return result

    async def _log_stream(self, iterator: AsyncIterator[Any]) -> AsyncIterator[GetTaskLogsResponse]:
        _require_loop(self.name)
        async for response in trio_asyncio.aio_as_trio(iterator):
            yield ours(response, GetTaskLogsResponse)

    async def _call(self, fn: Callable[..., Awaitable[_T]], /, *args: Any, **kwargs: Any) -> _T:
        _require_loop(self.name)
        result: _T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
        return result

    def _unwrap(self, meta: FlyteSdkMeta) -> Any:
        if meta.wrapped is not None:
            return meta.wrapped
        return self.metadata_type.decode(meta.data).wrapped


def _class_for(wrapped: Any) -> type[FlyteSdkConnector]:
    entry = _CLASSES.get(id(wrapped))
    if entry is not None and entry[0] is wrapped:
        return entry[1]
    for attribute in ("task_type_name", "metadata_type"):
        if not hasattr(wrapped, attribute):
            raise TypeError(f"{wrapped!r} is not a flyte-sdk connector: it has no {attribute}")
    cls = type(
        f"FlyteSdk[{type(wrapped).__qualname__}]",
        (FlyteSdkConnector,),
        {
            "__module__": __name__,
            "name": wrapped.name,
            "task_type_name": wrapped.task_type_name,
            "task_type_version": wrapped.task_type_version,
            "metadata_type": meta_type_for(wrapped.metadata_type),
        },
    )
    _CLASSES[id(wrapped)] = (wrapped, cls)
    return cls


def _require_loop(name: str) -> None:
    if trio_asyncio.current_loop.get() is None:
        raise NoAsyncioLoop(
            f"{name} is a flyte-sdk (asyncio) connector: call it inside "
            "`async with trio_asyncio.open_loop():` (the supervisor's commands open one)"
        )
