"""The connector supervisor: a durable Flyte connector service on Trio.

Layers, each importing only those below it (``tests/test_import_rules.py`` checks):

    cli        the commands: serve, run, journal, health, verify-recovery; settings; docs
    verify     restart-recovery verification: seeded schedule, report, in-process runner
    edge       gRPC on grpclib (asyncio, inside trio-asyncio): handlers, error mapping
    service    ConnectorService: Supervisor (actors + journal) and DirectService
    actor      one Trio actor per external job: lifecycle, inbox, kept answer
    wire       flyteidl2 messages <-> connector values; job identity
    observe    Prometheus metrics, structured logs
    journal    every job's state and history on SQLite or PostgreSQL
    _errors    the domain errors every layer may raise

Below them all sit ``connectors`` (the connector SDK) and ``flyteproto`` (generated code).
Packages reach each other through their ``__init__`` only, never a private module.
"""

from ._errors import ConnectorFailed as ConnectorFailed
from ._errors import InvalidArgument as InvalidArgument
from ._errors import NotFound as NotFound
from ._errors import ServiceError as ServiceError
from ._errors import Unavailable as Unavailable
from ._errors import Unimplemented as Unimplemented
from .edge import Listening as Listening
from .edge import serve_grpc as serve_grpc
from .journal import InMemoryJournal as InMemoryJournal
from .journal import Journal as Journal
from .journal import JournalError as JournalError
from .journal import JournalReader as JournalReader
from .observe import Metrics as Metrics
from .service import ConnectorService as ConnectorService
from .service import DirectService as DirectService
from .service import Supervisor as Supervisor

__all__ = [
    "ConnectorFailed",
    "ConnectorService",
    "DirectService",
    "InMemoryJournal",
    "InvalidArgument",
    "Journal",
    "JournalError",
    "JournalReader",
    "Listening",
    "Metrics",
    "NotFound",
    "ServiceError",
    "Supervisor",
    "Unavailable",
    "Unimplemented",
    "serve_grpc",
]
