"""The Databricks connector: Flyte ``databricks`` tasks as Jobs API 2.1 one-time runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

from .._connector import AsyncConnector
from .._resource import Resource, ResourceMeta, TaskLog
from ._api import JobsApi, base_url
from ._errors import DatabricksTransientError
from ._spec import (
    custom_of,
    idempotency_token_for,
    resolve_instance,
    resolve_token,
    submit_request,
)
from ._states import run_state

__all__ = ["CREATE_ATTEMPTS", "REQUEST_TIMEOUT", "DatabricksConnector", "DatabricksRun"]

_log = logging.getLogger(__name__)

#: Seconds one Jobs API call may take, connect to last byte.
REQUEST_TIMEOUT = 20.0
#: runs/submit attempts per create: a transient failure is repeated (with the same
#: idempotency token, so at most one run starts) while the caller's deadline allows.
CREATE_ATTEMPTS = 3
#: Delay before the n-th repeat of runs/submit without a Retry-After: base * 2**(n-1).
CREATE_RETRY_BASE = 1.0
#: The name of the log link, as Flyte's connector calls it.
LOG_LINK_NAME = "Databricks Console"


@dataclass
class DatabricksRun(ResourceMeta):
    """The handle of one run: its workspace and run id.

    The same JSON as flyte-sdk's ``DatabricksJobMetadata``, so a ``resource_meta`` made by
    Flyte's own connector is adopted as it is. No secret is ever part of it.
    """

    databricks_instance: str
    run_id: str


class DatabricksConnector(AsyncConnector[DatabricksRun]):
    """Runs Flyte ``databricks`` tasks (v0) on Databricks with the Jobs API 2.1.

    Connection keyword arguments (from the request's ``connection``):
        databricks_token: secret; the bearer token. Else the connector's ``token``, else
            the ``DATABRICKS_TOKEN`` environment variable. Never logged, never journalled.
        databricks_instance: config; the workspace host when the template names none.
            (Order: template ``databricksInstance``, this, the connector's ``instance``,
            ``FLYTE_DATABRICKS_INSTANCE``.) A bare host means ``https://host``.

    Keyword-only options: ``instance`` and ``token`` (defaults, see above),
    ``request_timeout`` (seconds per Jobs API call), ``create_attempts`` (runs/submit tries
    per create), and ``poll_interval``, ``max_concurrent_calls``, ``call_timeout``.

    Errors: ``DatabricksTransientError`` (retry; its ``retry_after`` is Databricks' hint),
    ``DatabricksRequestError`` (a PermanentError), ``JobNotFound`` for an unknown run.
    """

    # Unannotated: the types (and ClassVar-ness) are the base class's.
    name = "Databricks connector"
    task_type_name = "databricks"
    task_type_version = 0
    metadata_type = DatabricksRun
    supports_idempotent_create = True
    # Runs take minutes and Propeller asks every ~30 s: no need to poll faster than this.
    poll_interval = 15.0
    # Databricks rate-limits the Jobs API per workspace.
    max_concurrent_calls = 16
    call_timeout = 60.0

    def __init__(
        self,
        *,
        instance: str | None = None,
        token: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        create_attempts: int = CREATE_ATTEMPTS,
        poll_interval: float | None = None,
        max_concurrent_calls: int | None = None,
        call_timeout: float | None = None,
    ) -> None:
        if create_attempts < 1:
            raise ValueError("create_attempts must be at least 1")
        self._instance = instance
        self._token = token
        self.request_timeout = request_timeout
        self.create_attempts = create_attempts
        self.override_options(
            poll_interval=poll_interval,
            max_concurrent_calls=max_concurrent_calls,
            call_timeout=call_timeout,
        )

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}(instance={self._instance!r})"

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        *,
        idempotency_key: str | None = None,
        databricks_token: str | None = None,
        databricks_instance: str | None = None,
        **kwargs: Any,
    ) -> DatabricksRun:
        """Submit a one-time run (runs/submit) and return its handle.

        ``inputs`` are not sent: Flyte's entrypoint reads them from the task's arguments,
        and writes its outputs under ``output_prefix`` itself.
        Errors: PermanentError for a template or connection that cannot make a run;
        DatabricksTransientError when every attempt failed transiently.
        """
        custom = custom_of(task_template)
        instance = resolve_instance(custom, databricks_instance, self._instance)
        body = submit_request(
            task_template, custom, idempotency_token=idempotency_token_for(idempotency_key)
        )
        run_id = await self._submit(self._api(instance, databricks_token), body)
        _log.info("submitted Databricks run %s on %s", run_id, instance)
        return DatabricksRun(databricks_instance=instance, run_id=str(run_id))

    async def get(
        self, resource_meta: DatabricksRun, *, databricks_token: str | None = None, **kwargs: Any
    ) -> Resource:
        """The run's phase (see ``_states``), message and console link (runs/get)."""
        api = self._api(resource_meta.databricks_instance, databricks_token)
        run = await api.get_run(resource_meta.run_id)
        state = run_state(run)
        info: dict[str, Any] = {"run_id": resource_meta.run_id}
        if state.life_cycle_state:
            info["life_cycle_state"] = state.life_cycle_state
        if state.result_state:
            info["result_state"] = state.result_state
        return Resource(
            phase=state.phase,
            message=state.message,
            log_links=[TaskLog(name=LOG_LINK_NAME, uri=_run_page(resource_meta, run))],
            custom_info=info,
        )

    async def delete(
        self, resource_meta: DatabricksRun, *, databricks_token: str | None = None, **kwargs: Any
    ) -> None:
        """Cancel the run (runs/cancel): a no-op for a run that has ended.

        Errors: JobNotFound when Databricks does not know the run (counts as deleted).
        """
        api = self._api(resource_meta.databricks_instance, databricks_token)
        await api.cancel_run(resource_meta.run_id)
        _log.info("cancelled Databricks run %s", resource_meta.run_id)

    def _api(self, instance: str, token: str | None) -> JobsApi:
        return JobsApi(
            instance=instance,
            token=resolve_token(token, self._token),
            timeout=self.request_timeout,
        )

    async def _submit(self, api: JobsApi, body: dict[str, Any]) -> int:
        """runs/submit, repeated on transient failures while attempts and the deadline allow.

        The delay is Databricks' Retry-After when it sent one, else exponential.
        """
        attempt = 1
        while True:
            try:
                return await api.submit(body)
            except DatabricksTransientError as exc:
                delay = exc.retry_after
                if delay is None:
                    delay = CREATE_RETRY_BASE * 2 ** (attempt - 1)
                deadline = trio.current_effective_deadline()
                if attempt >= self.create_attempts or (
                    trio.current_time() + delay + self.request_timeout > deadline
                ):
                    raise
                _log.warning(
                    "Databricks runs/submit failed (attempt %d of %d), retrying in %.2gs: %s",
                    attempt,
                    self.create_attempts,
                    delay,
                    exc,
                )
                await trio.sleep(delay)
                attempt += 1


def _run_page(meta: DatabricksRun, run: dict[str, Any]) -> str:
    """Databricks' ``run_page_url``, else the console page built as Flyte's connector does."""
    url = run.get("run_page_url")
    if isinstance(url, str) and url:
        return url
    job_id = run.get("job_id")
    page = f"#job/{job_id}/run/{meta.run_id}" if job_id is not None else f"#run/{meta.run_id}"
    return f"{base_url(meta.databricks_instance)}/{page}"
