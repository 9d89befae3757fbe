"""The connector SDK: what a connector author writes against.

from connectors import AsyncConnector, ResourceMeta, Resource, Phase, ConnectorRegistry
"""

from ._connector import AsyncConnector as AsyncConnector
from ._errors import JobNotFound as JobNotFound
from ._errors import PermanentError as PermanentError
from ._literals import BlobRef as BlobRef
from ._literals import LiteralConversionError as LiteralConversionError
from ._literals import StructuredDatasetRef as StructuredDatasetRef
from ._literals import inputs_to_native as inputs_to_native
from ._literals import literal_to_native as literal_to_native
from ._literals import native_to_literal as native_to_literal
from ._literals import native_to_outputs as native_to_outputs
from ._local import RUN_LOCAL_POLL_INTERVAL as RUN_LOCAL_POLL_INTERVAL
from ._local import run_local as run_local
from ._phase import TERMINAL_PHASES as TERMINAL_PHASES
from ._phase import Phase as Phase
from ._phase import StateMap as StateMap
from ._phase import is_terminal as is_terminal
from ._registry import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._registry import FLYTE_ENTRY_POINT_GROUP as FLYTE_ENTRY_POINT_GROUP
from ._registry import ConnectorNeedsArguments as ConnectorNeedsArguments
from ._registry import ConnectorNotFound as ConnectorNotFound
from ._registry import ConnectorRegistry as ConnectorRegistry
from ._registry import DuplicateConnector as DuplicateConnector
from ._registry import TaskType as TaskType
from ._registry import load_connectors as load_connectors
from ._resource import InvalidResourceMeta as InvalidResourceMeta
from ._resource import Resource as Resource
from ._resource import ResourceMeta as ResourceMeta
from ._resource import TaskLog as TaskLog

__all__ = [
    "ENTRY_POINT_GROUP",
    "FLYTE_ENTRY_POINT_GROUP",
    "RUN_LOCAL_POLL_INTERVAL",
    "TERMINAL_PHASES",
    "AsyncConnector",
    "BlobRef",
    "ConnectorNeedsArguments",
    "ConnectorNotFound",
    "ConnectorRegistry",
    "DuplicateConnector",
    "InvalidResourceMeta",
    "JobNotFound",
    "LiteralConversionError",
    "PermanentError",
    "Phase",
    "Resource",
    "ResourceMeta",
    "StateMap",
    "StructuredDatasetRef",
    "TaskLog",
    "TaskType",
    "inputs_to_native",
    "is_terminal",
    "literal_to_native",
    "load_connectors",
    "native_to_literal",
    "native_to_outputs",
    "run_local",
]
