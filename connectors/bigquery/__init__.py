"""The BigQuery connector: Flyte's ``bigquery_query_job_task``, on google-cloud-bigquery.

from connectors.bigquery import BigQueryConnector, BigQueryJob
"""

from ._client import CREDENTIALS_SECRET as CREDENTIALS_SECRET
from ._client import EMULATOR_HOST_ENV as EMULATOR_HOST_ENV
from ._client import REQUEST_TIMEOUT as REQUEST_TIMEOUT
from ._client import RETRY_DEADLINE as RETRY_DEADLINE
from ._client import ClientFactory as ClientFactory
from ._connector import JOB_ID_PREFIX as JOB_ID_PREFIX
from ._connector import BigQueryConnector as BigQueryConnector
from ._meta import BigQueryJob as BigQueryJob
from ._parameters import query_parameters as query_parameters
from ._status import CONSOLE_LINK_NAME as CONSOLE_LINK_NAME
from ._status import RETRYABLE_REASONS as RETRYABLE_REASONS
from ._template import QuerySpec as QuerySpec

__all__ = [
    "CONSOLE_LINK_NAME",
    "CREDENTIALS_SECRET",
    "EMULATOR_HOST_ENV",
    "JOB_ID_PREFIX",
    "REQUEST_TIMEOUT",
    "RETRYABLE_REASONS",
    "RETRY_DEADLINE",
    "BigQueryConnector",
    "BigQueryJob",
    "ClientFactory",
    "QuerySpec",
    "query_parameters",
]
