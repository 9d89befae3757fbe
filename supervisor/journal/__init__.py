"""The journal: every job's latest state and history, committed before it is acted on.

SQLite (a file; the default) or PostgreSQL, through SQLAlchemy Core; schema by Alembic.
The job rules (``_rules``: final phases, unfinished, settled) are defined here once, for
SQL and Python alike. The bottom layer: it sits on ``connectors`` (the SDK's final phases)
only.
"""

from ._engine import create_engine as create_engine
from ._engine import normalize_url as normalize_url
from ._engine import safe_url as safe_url
from ._engine import sqlite_path as sqlite_path
from ._engine import writing as writing
from ._errors import FencedOut as FencedOut
from ._errors import JournalError as JournalError
from ._errors import JournalLost as JournalLost
from ._errors import JournalURLError as JournalURLError
from ._journal import Journal as Journal
from ._journal import JournalStatistics as JournalStatistics
from ._memory import InMemoryJournal as InMemoryJournal
from ._migrate import current_revision as current_revision
from ._migrate import downgrade as downgrade
from ._migrate import head_revision as head_revision
from ._migrate import upgrade as upgrade
from ._owner import JournalBusy as JournalBusy
from ._owner import Owner as Owner
from ._protocol import JournalLike as JournalLike
from ._proxy import JOURNAL_WRITES as JOURNAL_WRITES
from ._proxy import JournalCall as JournalCall
from ._proxy import JournalProxy as JournalProxy
from ._reader import JournalReader as JournalReader
from ._reader import JournalSummary as JournalSummary
from ._reader import OwnerCount as OwnerCount
from ._reader import PhaseCount as PhaseCount
from ._reader import ReplicaReport as ReplicaReport
from ._reader import ReplicaStatus as ReplicaStatus
from ._records import CreateState as CreateState
from ._records import DeleteState as DeleteState
from ._records import EventRecord as EventRecord
from ._records import JobQuery as JobQuery
from ._records import JobRecord as JobRecord
from ._records import Put as Put
from ._replica_journal import ReplicaJournal as ReplicaJournal
from ._replicas import CHANNEL as CHANNEL
from ._replicas import Adopted as Adopted
from ._replicas import ReplicaStore as ReplicaStore
from ._rules import CANCELLABLE as CANCELLABLE
from ._rules import NO_EXTERNAL_JOB as NO_EXTERNAL_JOB
from ._rules import TERMINAL_PHASES as TERMINAL_PHASES
from ._rules import UNFINISHED as UNFINISHED
from ._rules import UNFINISHED_RULE as UNFINISHED_RULE
from ._rules import is_settled as is_settled
from ._rules import is_unfinished as is_unfinished
from ._rules import phase_is_final as phase_is_final
from ._schema import metadata as metadata
from ._schema import replicas as replicas
from ._store import IfAbsent as IfAbsent
from ._store import Outcome as Outcome
from ._store import Store as Store

__all__ = [
    "CANCELLABLE",
    "CHANNEL",
    "JOURNAL_WRITES",
    "NO_EXTERNAL_JOB",
    "TERMINAL_PHASES",
    "UNFINISHED",
    "UNFINISHED_RULE",
    "Adopted",
    "CreateState",
    "DeleteState",
    "EventRecord",
    "FencedOut",
    "IfAbsent",
    "InMemoryJournal",
    "JobQuery",
    "JobRecord",
    "Journal",
    "JournalBusy",
    "JournalCall",
    "JournalError",
    "JournalLike",
    "JournalLost",
    "JournalProxy",
    "JournalReader",
    "JournalStatistics",
    "JournalSummary",
    "JournalURLError",
    "Outcome",
    "Owner",
    "OwnerCount",
    "PhaseCount",
    "Put",
    "ReplicaJournal",
    "ReplicaReport",
    "ReplicaStatus",
    "ReplicaStore",
    "Store",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_settled",
    "is_unfinished",
    "metadata",
    "normalize_url",
    "phase_is_final",
    "replicas",
    "safe_url",
    "sqlite_path",
    "upgrade",
    "writing",
]
