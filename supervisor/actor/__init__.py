"""One actor per external job: its lifecycle, its inbox, and the answer it keeps ready.

Modules: ``_actor`` (the lifecycle as steps), ``_backoff`` (retry delays), ``_credentials``
(the wait for secrets after a restart), ``_outage`` (journal faults waited out),
``_messages`` (the inbox), ``_job`` (poll memo, record changes, answer encoding).

Sits on ``wire`` (conversions), ``observe`` (metrics, logs) and ``journal``; the
``service`` layer starts actors and talks to them only through the names below.
"""

from ._actor import JobContext as JobContext
from ._actor import JobHandle as JobHandle
from ._actor import run_actor as run_actor
from ._backoff import BACKOFF_MAX as BACKOFF_MAX
from ._backoff import NO_FAILURES as NO_FAILURES
from ._backoff import Backoff as Backoff
from ._job import Observer as Observer
from ._job import answer_for as answer_for
from ._job import encode_answer as encode_answer
from ._job import link_from_json as link_from_json
from ._job import link_to_json as link_to_json
from ._job import observed as observed
from ._job import with_observation as with_observation
from ._messages import Cancel as Cancel
from ._messages import Credentials as Credentials
from ._messages import Inbox as Inbox
from ._outage import JournalFaults as JournalFaults
from ._outage import journal_unavailable as journal_unavailable
