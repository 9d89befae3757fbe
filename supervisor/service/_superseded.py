"""Superseded attempts: no orphan after a lost CreateTask response.

Flyte's executor treats any CreateTask error (a deadline that fired after we created the job
included) as a retryable failure and starts the task again with ``retry_attempt + 1``. Its
DeleteTask before the retry carries no ``resource_meta`` (it never got one), so the lost
attempt's external job would run on, unseen. When CreateTask arrives for attempt N+1 of a
task execution, the jobs of its earlier attempts that are still live here and were never
seen by a GetTask (so the executor never learnt of them) are cancelled through their actors,
with the message "superseded by attempt N+1".

The earlier attempts are found by identity, not by a search: a job's id is derived from the
task type and the task execution id, so replacing ``retry_attempt`` gives the ids of attempt
N, N-1, ...; only jobs of the same task execution can ever match. After a restart, a resumed
job counts as unseen until a GetTask names it.
"""

from __future__ import annotations

from collections.abc import Iterator

from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskExecutionIdentifier

from ..wire import job_id_for

__all__ = ["MAX_EARLIER_ATTEMPTS", "earlier_attempts", "superseded_reason"]

#: How many earlier attempts a CreateTask looks at (a bound against a huge retry_attempt).
MAX_EARLIER_ATTEMPTS = 16


def earlier_attempts(
    task_type: str, version: int, metadata: TaskExecutionMetadata | None
) -> Iterator[tuple[int, str]]:
    """``(attempt, job id)`` of the attempts before this request's, latest first."""
    execution = metadata.task_execution_id if metadata is not None else None
    if execution is None or execution.retry_attempt <= 0:
        return
    first = max(0, execution.retry_attempt - MAX_EARLIER_ATTEMPTS)
    for attempt in range(execution.retry_attempt - 1, first - 1, -1):
        earlier = TaskExecutionIdentifier.parse(bytes(execution))
        earlier.retry_attempt = attempt
        yield (
            attempt,
            job_id_for(task_type, version, TaskExecutionMetadata(task_execution_id=earlier)),
        )


def superseded_reason(attempt: int) -> str:
    return f"superseded by attempt {attempt}"
