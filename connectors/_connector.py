"""The connector interface: what a connector author implements.

The names and signatures follow flyte-sdk's ``flyte.connectors.AsyncConnector`` so a Flyte
connector author feels at home, with two differences: methods are Trio-native (blocking
client libraries go through ``trio.to_thread.run_sync``), and messages are the betterproto2
types generated from flyteidl2 (``flyteproto``), not the protobuf runtime's.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Generic, TypeVar

from flyteproto.flyteidl2.connector import (
    GetTaskLogsResponse,
    GetTaskMetricsResponse,
    TaskExecutionMetadata,
)
from flyteproto.flyteidl2.core import TaskTemplate

from ._resource import Resource, ResourceMeta

__all__ = ["AsyncConnector", "required_keywords"]

#: What the supervisor passes to ``create`` itself (flyte-sdk's service passes the first four).
_PASSED = frozenset(
    {"task_template", "output_prefix", "inputs", "task_execution_metadata", "idempotency_key"}
)


def required_keywords(create: Callable[..., Any]) -> frozenset[str]:
    """Parameters of ``create`` without a default that the supervisor does not pass."""
    try:
        parameters = inspect.signature(create).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in _PASSED
    )


M = TypeVar("M", bound=ResourceMeta)


class AsyncConnector(ABC, Generic[M]):
    """Base class of every connector.

    Class attributes:
        name: shown by ListConnectors / GetConnector; several task types may share one name.
        task_type_name, task_type_version: the task category this connector serves.
        metadata_type: the ResourceMeta subclass that ``create`` returns.
        supports_idempotent_create: True when ``create`` honours the ``idempotency_key``
            keyword (for example as a job id or idempotency token), so the supervisor may
            retry a create that was in flight when it crashed.
        poll_interval: seconds between two polls (``get``) of one job.
        max_concurrent_calls: cap on calls in flight to the external service, all jobs of
            this connector together.
        call_timeout: seconds after which a call to the external service counts as failed.
        (These four are plain attributes: an instance may override them, for example with
        ``override_options``.)

    Secrets and configs from the request's ``connection`` arrive as keyword arguments; so
    does ``idempotency_key`` on ``create``. Accept ``**kwargs`` to ignore what you don't use.
    Errors: raise PermanentError when a retry cannot help, JobNotFound when the external
    service does not know the job; anything else from ``get``/``delete`` is retried with
    backoff (never sooner than the exception's ``retry_after`` seconds, when it has one), and
    from ``create`` is reported to the caller (INTERNAL, with its message).
    """

    name: ClassVar[str] = "Async Connector"
    task_type_name: ClassVar[str]
    task_type_version: ClassVar[int] = 0
    metadata_type: ClassVar[type[ResourceMeta]]
    supports_idempotent_create: bool = False
    poll_interval: float = 10.0
    max_concurrent_calls: int = 64
    call_timeout: float = 60.0

    def override_options(
        self,
        *,
        poll_interval: float | None = None,
        max_concurrent_calls: int | None = None,
        call_timeout: float | None = None,
    ) -> None:
        """Set this instance's ``poll_interval``, ``max_concurrent_calls`` and ``call_timeout``
        to the values given; ``None`` keeps the class's."""
        if poll_interval is not None:
            self.poll_interval = poll_interval
        if max_concurrent_calls is not None:
            self.max_concurrent_calls = max_concurrent_calls
        if call_timeout is not None:
            self.call_timeout = call_timeout

    @abstractmethod
    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> M:
        """Start the external job and return its handle."""

    @abstractmethod
    async def get(self, resource_meta: M, **kwargs: Any) -> Resource:
        """Return the job's current state (and outputs once it has succeeded)."""

    @abstractmethod
    async def delete(self, resource_meta: M, **kwargs: Any) -> None:
        """Cancel the external job. A job that is already gone is not an error."""

    def required_connection_keys(self) -> frozenset[str]:
        """The keyword arguments ``create`` cannot do without beyond the ones the supervisor
        passes: secrets or configs the request's ``connection`` must carry (read from the
        signature: a keyword parameter without a default, such as ``*, api_token``)."""
        return required_keywords(self.create)

    async def get_metrics(self, resource_meta: M, **kwargs: Any) -> GetTaskMetricsResponse:
        """Optional. Errors: NotImplementedError when the connector has no metrics."""
        raise NotImplementedError(f"{self.name} does not provide metrics")

    def get_logs(self, resource_meta: M, **kwargs: Any) -> AsyncIterator[GetTaskLogsResponse] | Any:
        """Optional: an awaitable of one response, or an async iterator of responses.

        Errors: NotImplementedError when the connector has no logs.
        """
        raise NotImplementedError(f"{self.name} does not provide logs")
