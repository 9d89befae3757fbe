"""Who runs jobs behind the gRPC edge: the ``ConnectorService`` seam and its implementations.

``Supervisor`` runs every job as an actor over a journal; ``DirectService`` calls the
connector on every request (stateless, like flyte-sdk's service). Sits on ``actor``,
``wire``, ``observe`` and ``journal``.

``_protocol`` (the seam), ``_calls`` (calling a connector, its errors mapped),
``_stateless`` (the RPCs that need no job state), ``_direct``, ``_supervisor``, ``_lease``
(a replica's lease rules), ``_replica`` (heartbeat, takeover, self-fencing, release).
"""

from ._direct import DirectService as DirectService
from ._lease import Lease as Lease
from ._lease import LeaseRules as LeaseRules
from ._protocol import ConnectorService as ConnectorService
from ._replica import Replica as Replica
from ._supervisor import Supervisor as Supervisor

__all__ = [
    "ConnectorService",
    "DirectService",
    "Lease",
    "LeaseRules",
    "Replica",
    "Supervisor",
]
