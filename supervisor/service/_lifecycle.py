"""Lifecycle events in a job's history: which replica resumed or adopted it, and when.

A job's events say what happened to the external job; these say what happened to its
actor (``resumed`` after a restart, ``adopted`` from a ``resource_meta`` we did not make),
each with the replica (host:pid) that did it, so that ``journal show`` tells a restart
from a takeover. Resuming writes one event per job, in large batches (one transaction
each) before the actors start: the resume of 100,000 jobs is a few transactions, and no
actor's own write can race with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Sequence
from functools import cache

from ..actor import request_needs_credentials
from ..journal import JobRecord, JournalLike, Put

__all__ = ["RESUMED_BATCH", "journal_resumed", "lifecycle_detail", "replica_name"]

#: Resumed events written per transaction.
RESUMED_BATCH = 5000


@cache
def replica_name() -> str:
    """This process, as lifecycle events name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lifecycle_detail(*, replica: str | None = None, **fields: object) -> str:
    """An event's detail: the replica (its id; without one, host:pid), and ``fields``."""
    return json.dumps({"replica": replica or replica_name(), **fields})


async def journal_resumed(
    journal: JournalLike, records: Sequence[JobRecord], now: float
) -> list[JobRecord]:
    """Journal a ``resumed`` event for each of ``records``; the records as now committed,
    without their request (the journal keeps it, and a put without one leaves it) unless the
    job needs credentials from it (the actor notes that, then drops it).

    Errors: the journal's (``JournalError``): nothing is resumed then.
    """
    stamped = [
        dataclasses.replace(
            r,
            updated_at=max(now, r.updated_at),
            create_request=(
                r.create_request if request_needs_credentials(r.create_request) else None
            ),
        )
        for r in records
    ]
    detail = lifecycle_detail()
    for start in range(0, len(stamped), RESUMED_BATCH):
        chunk = stamped[start : start + RESUMED_BATCH]
        await journal.write(*(Put(record, "resumed", detail) for record in chunk))
    return stamped
