"""The journal: every job's latest state and history, committed before it is acted on.

SQLite (a file; the default) or PostgreSQL, through SQLAlchemy Core; schema by Alembic.
"""

from ._engine import DEFAULT_URL as DEFAULT_URL
from ._engine import create_engine as create_engine
from ._engine import normalize_url as normalize_url
from ._engine import safe_url as safe_url
from ._engine import sqlite_path as sqlite_path
from ._errors import JournalError as JournalError
from ._errors import JournalLost as JournalLost
from ._errors import JournalURLError as JournalURLError
from ._journal import Journal as Journal
from ._journal import JournalStatistics as JournalStatistics
from ._memory import InMemoryJournal as InMemoryJournal
from ._memory import is_unfinished as is_unfinished
from ._migrate import current_revision as current_revision
from ._migrate import downgrade as downgrade
from ._migrate import head_revision as head_revision
from ._migrate import upgrade as upgrade
from ._protocol import JournalLike as JournalLike
from ._reader import JournalReader as JournalReader
from ._reader import JournalSummary as JournalSummary
from ._reader import PhaseCount as PhaseCount
from ._records import CreateState as CreateState
from ._records import DeleteState as DeleteState
from ._records import EventRecord as EventRecord
from ._records import JobRecord as JobRecord
from ._records import Put as Put
from ._schema import TERMINAL_PHASES as TERMINAL_PHASES
from ._schema import UNFINISHED as UNFINISHED
from ._schema import metadata as metadata
from ._store import IfAbsent as IfAbsent
from ._store import Store as Store

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_PHASES",
    "UNFINISHED",
    "CreateState",
    "DeleteState",
    "EventRecord",
    "IfAbsent",
    "InMemoryJournal",
    "JobRecord",
    "Journal",
    "JournalError",
    "JournalLike",
    "JournalLost",
    "JournalReader",
    "JournalStatistics",
    "JournalSummary",
    "JournalURLError",
    "PhaseCount",
    "Put",
    "Store",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_unfinished",
    "metadata",
    "normalize_url",
    "safe_url",
    "sqlite_path",
    "upgrade",
]
