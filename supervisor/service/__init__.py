"""Who runs jobs behind the gRPC edge: the ``ConnectorService`` seam and its implementations.

``Supervisor`` runs every job as an actor over a journal; ``DirectService`` calls the
connector on every request (stateless, like flyte-sdk's service). Sits on ``actor``,
``wire``, ``observe`` and ``journal``.
"""

from ._service import ConnectorService as ConnectorService
from ._service import DirectService as DirectService
from ._supervisor import Supervisor as Supervisor
