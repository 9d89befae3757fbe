"""What the journal stores: one row per job, and an append-only history of its changes.

Records hold plain values only (str, int, float, bytes, JSON text); a phase is Flyte's
number for it. Secrets never reach a record: the supervisor strips the request's
``connection`` before it builds one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CreateState", "DeleteState", "EventRecord", "JobQuery", "JobRecord", "Put"]


class CreateState(enum.StrEnum):
    PENDING = "pending"  # intent journalled; connector.create not known to have returned
    CREATED = "created"  # resource_meta known
    FAILED = "failed"  # connector.create raised; a repeated CreateTask tries again
    ABANDONED = "abandoned"  # in flight at a crash and the connector cannot de-duplicate:
    # never retried (that could start the external job twice); the phase says so


class DeleteState(enum.StrEnum):
    NONE = "none"
    REQUESTED = "requested"  # intent journalled; the external cancel may not have happened
    DONE = "done"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One external job, as the supervisor last journalled it."""

    job_id: str
    task_type: str
    task_type_version: int
    connector: str
    attempt: int
    create_state: CreateState
    delete_state: DeleteState
    phase: int  # flyteidl2.core.TaskExecution.Phase value
    created_at: float  # wall clock, seconds since the epoch
    updated_at: float
    resource_meta: bytes | None = None  # the connector's encoded ResourceMeta
    message: str = ""
    log_links: str = "[]"  # JSON list of TaskLog dicts
    outputs: bytes | None = None  # serialized flyteidl2.task.Outputs
    custom_info: str | None = None  # JSON object
    # CreateTaskRequest without `connection`'s values. Written with the job's first put; None
    # in a later put means "as journalled": a live job's record drops it once the job exists.
    create_request: bytes | None = None
    deadline: float | None = None  # wall clock time at which the job times out
    finished_at: float | None = None  # set when the phase became terminal
    owner: str | None = None  # the replica whose actor runs the job (None: nobody's)
    lease_until: float | None = None  # reserved
    epoch: int = 0  # +1 at each change of owner: fences out the writes of earlier owners


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a job's history."""

    job_id: str
    seq: int  # increasing across the whole journal
    at: float  # wall clock
    kind: str  # e.g. "create_intent", "created", "phase", "delete_intent", "deleted", "adopted"
    phase: int
    detail: str  # JSON object; never holds secrets


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQuery:
    """Which jobs a list wants: those matching every filter given, newest first."""

    phase: int | None = None
    task_type: str | None = None
    connector: str | None = None
    older_than: float | None = None  # created before this wall clock time
    unfinished: bool = False  # only jobs the supervisor still owes work (``is_unfinished``)
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``record`` (insert or replace the job's row) and append one event for it.

    A record without ``create_request`` keeps the row's (see ``JobRecord.create_request``).

    Fenced: an existing row is written only while its owner and epoch are ``expect``
    (default: the record's own); otherwise the put is refused (``FencedOut``).
    """

    record: JobRecord
    kind: str
    detail: str = "{}"
    expect: tuple[str | None, int] | None = None
