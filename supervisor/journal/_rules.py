"""Which jobs are finished: the one rule, for Python and SQL alike.

The supervisor owes a job work while its create is in flight, a cancel is not done, or its
external job's phase is not final. A create that failed or was abandoned has no external
job, so its phase says nothing. ``UNFINISHED_RULE`` is the same rule as SQL, which the
database computes into the jobs table's ``live`` column (``UNFINISHED`` reads it, and the
partial index of unfinished jobs is on it); a test runs both over every state and checks
they agree.

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
    "UNFINISHED_RULE",
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

UNFINISHED_RULE = (
    f"create_state = '{CreateState.PENDING}'"
    f" OR delete_state = '{DeleteState.REQUESTED}'"
    f" OR (create_state NOT IN ({_NO_JOB_SQL})"
    f" AND phase NOT IN ({_FINAL_SQL}))"
)
"""``is_unfinished`` as SQL over a jobs row: "the supervisor still owes this job work".

The expression of the generated column ``live`` (a change needs a migration that rebuilds
it); queries read the column instead (``UNFINISHED``).
"""

UNFINISHED = "live"
"""``is_unfinished`` as a SQL condition on the jobs table: the column the database computes
from ``UNFINISHED_RULE`` on every write. The partial index ``ix_jobs_unfinished`` has it as
its predicate (both SQLite and PostgreSQL match a query's literal condition to it), and no
index reads ``phase``, so a transition rewrites no index entry (PostgreSQL: a heap-only
update)."""

CANCELLABLE = f"(create_state NOT IN ({_NO_JOB_SQL}) AND phase NOT IN ({_FINAL_SQL}))"
"""SQL: an external job exists and has not finished (with no delete intent: not settled)."""
