"""Job identities: where exactly-once create starts.

A job's id is derived from what Propeller sends: the task type and the
``task_execution_metadata.task_execution_id`` (which includes the retry attempt). A
re-sent CreateTask for the same execution and attempt therefore names the same job. The
id doubles as the idempotency key handed to connectors (BigQuery job ids, Databricks
idempotency tokens): 32 lowercase hex characters fit every such field we know.

A job adopted from a ``resource_meta`` we never created gets an id derived from that
resource_meta, so concurrent adoptions of one job agree.
"""

from __future__ import annotations

import hashlib
import uuid

from flyteproto.flyteidl2.connector import TaskExecutionMetadata

__all__ = ["adopted_job_id", "job_id_for", "retry_attempt"]

_ID_LENGTH = 32


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:_ID_LENGTH]


def job_id_for(task_type: str, version: int, metadata: TaskExecutionMetadata | None) -> str:
    """The job id for a CreateTask; random when the request names no task execution."""
    execution = metadata.task_execution_id if metadata is not None else None
    if execution is None:
        return uuid.uuid4().hex
    return _digest(b"create/v1", task_type.encode(), str(version).encode(), bytes(execution))


def adopted_job_id(task_type: str, version: int, resource_meta: bytes) -> str:
    return _digest(b"adopt/v1", task_type.encode(), str(version).encode(), resource_meta)


def retry_attempt(metadata: TaskExecutionMetadata | None) -> int:
    execution = metadata.task_execution_id if metadata is not None else None
    return execution.retry_attempt if execution is not None else 0
