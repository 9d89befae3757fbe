"""What operators see: Prometheus metrics and structured logs.

Sits on ``journal`` (records and statistics it reports on) only.
"""

from ._logging import JobFilter as JobFilter
from ._logging import JsonFormatter as JsonFormatter
from ._logging import KeyValueFormatter as KeyValueFormatter
from ._logging import bind_job as bind_job
from ._logging import configure_logging as configure_logging
from ._logging import job_fields as job_fields
from ._metrics import EXTERNAL_OPERATIONS as EXTERNAL_OPERATIONS
from ._metrics import MAX_TASK_TYPES as MAX_TASK_TYPES
from ._metrics import OPERATIONS as OPERATIONS
from ._metrics import ConnectorMetrics as ConnectorMetrics
from ._metrics import Metrics as Metrics
from ._metrics import MetricsServer as MetricsServer
from ._metrics import ReplicaStatistics as ReplicaStatistics
from ._metrics import RpcCall as RpcCall

__all__ = [
    "EXTERNAL_OPERATIONS",
    "MAX_TASK_TYPES",
    "OPERATIONS",
    "ConnectorMetrics",
    "JobFilter",
    "JsonFormatter",
    "KeyValueFormatter",
    "Metrics",
    "MetricsServer",
    "ReplicaStatistics",
    "RpcCall",
    "bind_job",
    "configure_logging",
    "job_fields",
]
