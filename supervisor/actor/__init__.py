"""One actor per external job: its lifecycle, its inbox, and the answer it keeps ready.

Sits on ``wire`` (conversions), ``observe`` (metrics, logs) and ``journal``; the
``service`` layer starts actors and talks to them only through the names below.

``_actor`` (the lifecycle as steps), ``_timers`` (one timer for a connector's sleeping
actors and its calls' timeouts), ``_backoff`` (retry delays), ``_credentials`` (the wait
for secrets after a restart), ``_outage`` (journal faults waited out), ``_messages`` (the
inbox), ``_observer`` (what a poll saw, in journal form), ``_changes`` (a record changed by
it), ``_links`` (log links as JSON), ``_answer`` (the GetTask answer and its encoded bytes).
"""

from ._actor import JobContext as JobContext
from ._actor import JobHandle as JobHandle
from ._actor import actor_ended as actor_ended
from ._actor import first_step as first_step
from ._answer import answer_for as answer_for
from ._answer import encode_answer as encode_answer
from ._backoff import BACKOFF_MAX as BACKOFF_MAX
from ._backoff import NO_FAILURES as NO_FAILURES
from ._backoff import Backoff as Backoff
from ._changes import with_observation as with_observation
from ._credentials import NO_KWARGS as NO_KWARGS
from ._credentials import request_needs_credentials as request_needs_credentials
from ._links import link_from_json as link_from_json
from ._links import link_to_json as link_to_json
from ._messages import Cancel as Cancel
from ._messages import Credentials as Credentials
from ._messages import Inbox as Inbox
from ._messages import Latch as Latch
from ._observer import Observer as Observer
from ._observer import observed as observed
from ._outage import JournalFaults as JournalFaults
from ._outage import journal_unavailable as journal_unavailable
from ._timers import Timers as Timers

__all__ = [
    "BACKOFF_MAX",
    "NO_FAILURES",
    "NO_KWARGS",
    "Backoff",
    "Cancel",
    "Credentials",
    "Inbox",
    "JobContext",
    "JobHandle",
    "JournalFaults",
    "Latch",
    "Observer",
    "Timers",
    "actor_ended",
    "answer_for",
    "encode_answer",
    "first_step",
    "journal_unavailable",
    "link_from_json",
    "link_to_json",
    "observed",
    "request_needs_credentials",
    "with_observation",
]
