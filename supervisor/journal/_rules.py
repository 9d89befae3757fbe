"""Which jobs are finished: the one rule, for Python and SQL alike.

The supervisor owes a job work while its create is in flight, a cancel is not done, or its
external job's phase is not final. A create that failed or was abandoned has no external
job, so its phase says nothing. ``UNFINISHED`` is the same rule as SQL (also the partial
index's predicate); a test runs both over every state and checks they agree.

The final phases are the SDK's (``connectors.TERMINAL_PHASES``), as the numbers the journal
stores (Flyte's ``TaskExecution.Phase`` values).
"""

from __future__ import annotations

from connectors import TERMINAL_PHASES as _FINAL

from ._records import CreateState, DeleteState, JobRecord

__all__ = [
    "CANCELLABLE",
    "NO_EXTERNAL_JOB",
    "TERMINAL_PHASES",
    "UNFINISHED",
    "is_settled",
    "is_unfinished",
    "phase_is_final",
]

TERMINAL_PHASES: tuple[int, ...] = tuple(sorted(int(phase) for phase in _FINAL))
"""The final phases as stored: SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED."""

NO_EXTERNAL_JOB = (CreateState.FAILED, CreateState.ABANDONED)
"""Create states after which no external job exists (the phase is the supervisor's)."""


def phase_is_final(record: JobRecord) -> bool:
    """The job's phase is final: the external job will not change again."""
    return record.phase in TERMINAL_PHASES


def is_unfinished(record: JobRecord) -> bool:
    """Work is left: a create in flight, a cancel not done, or a phase not yet final."""
    if record.create_state == CreateState.PENDING:
        return True
    if record.delete_state == DeleteState.REQUESTED:
        return True
    if record.create_state in NO_EXTERNAL_JOB:
        return False
    return not phase_is_final(record)


def is_settled(record: JobRecord) -> bool:
    """Nothing left to cancel: finished, cancelled, or never created."""
    if record.delete_state == DeleteState.DONE:
        return True
    if record.delete_state == DeleteState.REQUESTED:
        return False
    return phase_is_final(record) or record.create_state in NO_EXTERNAL_JOB


_NO_JOB_SQL = ", ".join(f"'{state}'" for state in NO_EXTERNAL_JOB)
_FINAL_SQL = ", ".join(map(str, TERMINAL_PHASES))

UNFINISHED = (
    f"create_state = '{CreateState.PENDING}'"
    f" OR delete_state = '{DeleteState.REQUESTED}'"
    f" OR (create_state NOT IN ({_NO_JOB_SQL})"
    f" AND phase NOT IN ({_FINAL_SQL}))"
)
"""``is_unfinished`` as SQL: "the supervisor still owes this job work".

Literal SQL, not bound parameters, so both SQLite and PostgreSQL match queries to the
partial index ``ix_jobs_unfinished``, whose predicate it is.
"""

CANCELLABLE = f"(create_state NOT IN ({_NO_JOB_SQL}) AND phase NOT IN ({_FINAL_SQL}))"
"""SQL: an external job exists and has not finished (with no delete intent: not settled)."""
