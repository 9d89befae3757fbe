"""The BigQuery connector: Flyte's ``bigquery_query_job_task``, one query job per task."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from google.api_core import exceptions as api_exceptions
from google.auth.credentials import Credentials

from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

from .._connector import AsyncConnector
from .._errors import JobNotFound, PermanentError
from .._resource import Resource
from ._client import (
    REQUEST_TIMEOUT,
    RETRY_DEADLINE,
    ClientFactory,
    ClientPool,
    import_bigquery,
    in_thread,
    short_retry,
)
from ._meta import BigQueryJob
from ._parameters import query_parameters
from ._status import resource_for
from ._template import QuerySpec, job_labels

if TYPE_CHECKING:  # imported on first use (see _client)
    from google.api_core.retry import Retry
    from google.cloud import bigquery

__all__ = ["JOB_ID_PREFIX", "BigQueryConnector", "job_id_for"]

_log = logging.getLogger(__name__)

#: BigQuery job ids are ``JOB_ID_PREFIX`` + the supervisor's idempotency key.
JOB_ID_PREFIX = "flyte_"
#: HTTP statuses of create errors that a retry may get past, whatever their reason.
_TRANSIENT_STATUSES = frozenset({408, 429})
#: Error reasons that BigQuery also sends with 4xx statuses but that pass with time.
_TRANSIENT_REASONS = frozenset(
    {"rateLimitExceeded", "quotaExceeded", "backendError", "internalError", "jobRateLimitExceeded"}
)
_T = TypeVar("_T")


def job_id_for(idempotency_key: str | None) -> str:
    """The BigQuery job id for a create: fixed by the key, random without one."""
    return JOB_ID_PREFIX + (idempotency_key or uuid.uuid4().hex)


class BigQueryConnector(AsyncConnector[BigQueryJob]):
    """Runs a task's SQL as a BigQuery query job, as Flyte's BigQuery connector does.

    The template is read as Flyte's BigQuery plugins write it (see ``QuerySpec``): the SQL,
    ProjectID and Location, and the query job config, which is honoured. Inputs become named
    query parameters; the job id is derived from the idempotency key, so a repeated create
    adopts the job the first one made. On success the output ``results`` is the destination
    table, ``bq://project:dataset.table``.

    Credentials: the connection secret ``google_application_credentials`` (a service-account
    key as JSON, kept in memory only), else ``credentials``, else application default
    credentials.

    Keyword-only options: ``api_endpoint`` (e.g. an emulator's ``http://127.0.0.1:9050``),
    ``credentials``, ``client_factory`` (``factory(project, credentials) -> Client``, instead
    of the default client; not with ``api_endpoint``), ``retry_deadline`` and
    ``request_timeout`` (seconds, for every call to BigQuery).
    """

    # Unannotated: the types (and ClassVar-ness) are the base class's.
    name = "Bigquery Connector"
    task_type_name = "bigquery_query_job_task"
    task_type_version = 0
    metadata_type = BigQueryJob
    supports_idempotent_create = True
    poll_interval = 10.0
    max_concurrent_calls = 16

    def __init__(
        self,
        *,
        api_endpoint: str | None = None,
        credentials: Credentials | None = None,
        client_factory: ClientFactory | None = None,
        retry_deadline: float = RETRY_DEADLINE,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._clients = ClientPool.from_options(
            api_endpoint=api_endpoint, credentials=credentials, client_factory=client_factory
        )
        self._retry_deadline = retry_deadline
        self._short_retry: Retry | None = None  # made on first use: it imports bigquery
        self._timeout = request_timeout
        # Past the library's retries, and one last request, the call counts as failed.
        self.call_timeout = retry_deadline + request_timeout + 5.0

    @property
    def _retry(self) -> Retry:
        if self._short_retry is None:
            self._short_retry = short_retry(self._retry_deadline)
        return self._short_retry

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        *,
        idempotency_key: str | None = None,
        google_application_credentials: str | None = None,
        **kwargs: Any,
    ) -> BigQueryJob:
        """Insert the query job; if it exists already (409 Conflict), adopt it.

        Errors: PermanentError for a template, input or request that BigQuery cannot take
        (a 4xx other than rate limits); other errors of the client library as they are.
        """
        await import_bigquery()
        spec = QuerySpec.from_template(task_template)
        config = spec.job_config(
            query_parameters(inputs or {}, task_template.interface),
            labels=job_labels(task_execution_metadata),
        )
        client = await self._clients.client(spec.project, google_application_credentials)
        project = spec.project or client.project
        if not project:
            raise PermanentError("no ProjectID in the template's custom, nor a default project")
        job_id = job_id_for(idempotency_key)
        insert = functools.partial(
            client.query,
            spec.statement,
            job_config=config,
            job_id=job_id,
            project=project,
            location=spec.location,
            retry=self._retry,
            timeout=self._timeout,
            job_retry=None,
        )
        try:
            job = await in_thread(insert)
        except api_exceptions.Conflict:
            return await self._adopt(client, BigQueryJob(job_id, project, spec.location))
        except api_exceptions.ClientError as exc:
            if _is_transient(exc):
                raise
            raise PermanentError(f"BigQuery refused the query job: {exc.message}") from exc
        _log.info("BigQuery job %s:%s.%s inserted", project, job.location, job_id)
        return BigQueryJob(job_id=job_id, project=project, location=job.location or spec.location)

    async def _adopt(self, client: bigquery.Client, wanted: BigQueryJob) -> BigQueryJob:
        """The job that a 409 says exists: where BigQuery says it runs."""
        try:
            job = await self._job_call(client.get_job, wanted)
        except (JobNotFound, api_exceptions.GoogleAPIError) as exc:
            # The job exists: failing the create now would lose it. BigQuery may not show a
            # job it just said exists; polls will find it where we asked for it.
            _log.warning("BigQuery job %s exists but get_job failed: %s", wanted.job_id, exc)
            return wanted
        _log.info("BigQuery job %s existed already: adopted", wanted.job_id)
        return BigQueryJob(wanted.job_id, wanted.project, job.location or wanted.location)

    async def get(
        self,
        resource_meta: BigQueryJob,
        *,
        google_application_credentials: str | None = None,
        **kwargs: Any,
    ) -> Resource:
        """The job's phase; a job that failed is a FAILED Resource, not an error.

        Errors: JobNotFound when BigQuery does not know the job; other errors of the client
        library as they are (the supervisor retries them).
        """
        await import_bigquery()
        client = await self._clients.client(resource_meta.project, google_application_credentials)
        job = await self._job_call(client.get_job, resource_meta)
        return resource_for(resource_meta, job)

    async def delete(
        self,
        resource_meta: BigQueryJob,
        *,
        google_application_credentials: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Cancel the job. A finished job needs nothing; an unknown one raises JobNotFound."""
        await import_bigquery()
        client = await self._clients.client(resource_meta.project, google_application_credentials)
        await self._job_call(client.cancel_job, resource_meta)
        _log.info("BigQuery job %s:%s cancelled", resource_meta.project, resource_meta.job_id)

    async def _job_call(self, method: Callable[..., _T], job: BigQueryJob) -> _T:
        """``method(job_id, project=, location=)`` in a worker thread, with short retries.

        Errors: JobNotFound for BigQuery's 404.
        """
        call = functools.partial(
            method,
            job.job_id,
            project=job.project,
            location=job.location,
            retry=self._retry,
            timeout=self._timeout,
        )
        try:
            return await in_thread(call)
        except api_exceptions.NotFound as exc:
            raise JobNotFound(f"BigQuery job {job.project}:{job.job_id}") from exc


def _is_transient(exc: api_exceptions.ClientError) -> bool:
    if exc.code in _TRANSIENT_STATUSES:
        return True
    return any(
        isinstance(error, Mapping) and error.get("reason") in _TRANSIENT_REASONS
        for error in exc.errors
    )
