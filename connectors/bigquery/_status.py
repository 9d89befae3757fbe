"""A BigQuery job's state as a Resource: phase, message, console link, outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from flyteproto.flyteidl2.core import TaskLogLinkType

from .._literals import StructuredDatasetRef
from .._phase import Phase, StateMap
from .._resource import Resource, TaskLog
from ._meta import BigQueryJob

if TYPE_CHECKING:  # imported on first use (see _client)
    from google.cloud.bigquery import CopyJob, ExtractJob, LoadJob, QueryJob, UnknownJob

__all__ = [
    "CONSOLE_LINK_NAME",
    "RETRYABLE_REASONS",
    "STATES",
    "AnyJob",
    "console_link",
    "resource_for",
]

#: What ``Client.get_job`` returns.
AnyJob: TypeAlias = "LoadJob | CopyJob | ExtractJob | QueryJob | UnknownJob"

STATES = StateMap(
    {"PENDING": Phase.INITIALIZING, "RUNNING": Phase.RUNNING, "DONE": Phase.SUCCEEDED},
    service="BigQuery",
)
#: Error reasons of a finished job that a new attempt may not meet (as Flyte's Go plugin):
#: the task is RETRYABLE_FAILED rather than FAILED.
RETRYABLE_REASONS = frozenset(
    {
        "backendError",
        "internalError",
        "jobBackendError",
        "jobInternalError",
        "quotaExceeded",
        "rateLimitExceeded",
        "jobRateLimitExceeded",
        "resourceInUse",
        "tableUnavailable",
    }
)
CONSOLE_LINK_NAME = "BigQuery Console"
_CONSOLE = "https://console.cloud.google.com/bigquery"


def console_link(job: BigQueryJob) -> TaskLog:
    """The link Flyte's BigQuery connector shows: the job's page in the Cloud console."""
    uri = f"{_CONSOLE}?project={job.project}&j=bq:{job.location}:{job.job_id}&page=queryresults"
    return TaskLog(name=CONSOLE_LINK_NAME, uri=uri, ready=True, link_type=TaskLogLinkType.DASHBOARD)


def resource_for(meta: BigQueryJob, job: AnyJob) -> Resource:
    """The Resource for ``job`` as ``get_job`` returned it.

    A finished job with an error is FAILED (RETRYABLE_FAILED for RETRYABLE_REASONS) with
    BigQuery's reason and message; a successful one has the output ``results``: the
    destination table as ``bq://project:dataset.table``, when the job has one.
    """
    from google.cloud.bigquery import QueryJob

    links = [console_link(meta)]
    phase, note = STATES.phase(str(job.state or "PENDING"))
    if phase != Phase.SUCCEEDED:
        return Resource(phase=phase, message=note, log_links=links)
    info = _statistics(job)
    error = job.error_result
    if error:
        reason = str(error.get("reason") or "error")
        failed = Phase.RETRYABLE_FAILED if reason in RETRYABLE_REASONS else Phase.FAILED
        message = f"BigQuery job failed: {reason}: {error.get('message') or 'no message'}"
        return Resource(
            phase=failed, message=message, log_links=links, custom_info={**info, "reason": reason}
        )
    outputs = None
    destination = job.destination if isinstance(job, QueryJob) else None
    if destination is not None:
        uri = f"bq://{destination.project}:{destination.dataset_id}.{destination.table_id}"
        outputs = {"results": StructuredDatasetRef(uri=uri)}
    return Resource(phase=phase, log_links=links, outputs=outputs, custom_info=info)


def _statistics(job: AnyJob) -> dict[str, Any]:
    """What users like to see about a finished query: bytes processed and billed."""
    from google.cloud.bigquery import QueryJob

    if not isinstance(job, QueryJob):
        return {}
    found = {
        "total_bytes_processed": job.total_bytes_processed,
        "total_bytes_billed": job.total_bytes_billed,
        "cache_hit": job.cache_hit,
    }
    return {key: value for key, value in found.items() if value is not None}
