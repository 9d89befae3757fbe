"""The connection secrets of one job, and the wait for them after a restart.

Secrets live in memory only (never in the journal), so a resumed job whose request carried
secrets or configs has none: before its next external call it journals that it waits
(once), then sleeps until a request brings them (``offer``). A job started without any
needs none and never waits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import trio
from flyteidl2.connector import connector_pb2

from ..journal import JobRecord
from ._messages import Inbox

__all__ = ["NO_KWARGS", "WAITING_MESSAGE", "CredentialsWait", "request_needs_credentials"]

_log = logging.getLogger(__name__)

#: The credentials of a job started without any (read-only, shared by all such jobs).
NO_KWARGS: Mapping[str, str] = MappingProxyType({})

WAITING_MESSAGE = (
    "waiting for credentials: the supervisor restarted and keeps secrets in memory only; "
    "the next request that brings the connection resumes this job"
)


class CredentialsWait:
    """One actor's credentials: the keyword arguments of its calls, once it has them."""

    __slots__ = ("_announced", "_needed", "arrived_at", "kwargs")

    def __init__(self, kwargs: Mapping[str, str] | None, *, needed: bool = False) -> None:
        """``needed``: known to need them (its record may no longer hold the request)."""
        self.kwargs: Mapping[str, str] | None = None
        if kwargs is not None:
            # No credentials (most jobs): one shared empty mapping, not a dict per job.
            self.kwargs = dict(kwargs) if kwargs else NO_KWARGS
        self._needed: bool | None = True if needed else None  # asked once, if started without
        self._announced = False  # "waiting for credentials" journalled
        #: When the credentials came after a wait (what is polled late since is not lag).
        self.arrived_at = -math.inf

    def offer(self, kwargs: Mapping[str, str]) -> None:
        self.kwargs = dict(kwargs)
        if self._announced:
            self.arrived_at = trio.current_time()

    async def ready(
        self, record: JobRecord, inbox: Inbox, announce: Callable[[str], Awaitable[None]]
    ) -> bool:
        """True when the job has the credentials its calls need; otherwise journal the wait
        (``announce``, once), sleep until a message comes and return False (the caller takes
        it, and asks again)."""
        if self.kwargs is not None:
            return True
        if self._needed is None:
            self._needed = _credential_keys(record)
        if not self._needed:
            return True
        if not self._announced:
            _log.info("job %s waits for credentials", record.job_id)
            await announce(WAITING_MESSAGE)
            self._announced = True
        await inbox.park()
        return False


def _credential_keys(record: JobRecord) -> bool:
    return request_needs_credentials(record.create_request)


def request_needs_credentials(create_request: bytes | None) -> bool:
    """Whether a job journalled with ``create_request`` was started with connection secrets
    or configs (kept in memory only).

    Asked of every resumed job. The official parser (upb, in C) reads the journalled request
    much faster than betterproto2, which counts at 100,000 resumed jobs.
    """
    if not create_request:
        return False
    connection = connector_pb2.CreateTaskRequest.FromString(create_request).connection
    return bool(connection.secrets or connection.configs)
