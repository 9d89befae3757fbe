"""The connector supervisor: a durable Flyte connector service on Trio."""

from ._errors import ConnectorFailed as ConnectorFailed
from ._errors import InvalidArgument as InvalidArgument
from ._errors import NotFound as NotFound
from ._errors import ServiceError as ServiceError
from ._errors import Unavailable as Unavailable
from ._errors import Unimplemented as Unimplemented
from ._service import ConnectorService as ConnectorService
from ._service import DirectService as DirectService

__all__ = [
    "ConnectorFailed",
    "ConnectorService",
    "DirectService",
    "InvalidArgument",
    "NotFound",
    "ServiceError",
    "Unavailable",
    "Unimplemented",
]
