"""Host unmodified flyte-sdk connectors (``flyte.connectors.AsyncConnector``) in the supervisor.

An optional extra (``pip install 'flyte-connector-supervisor[flytesdk]'``): a flyte-sdk
connector gains the journal, resume and exactly-once cancel without a line changed.

    from connectors.flytesdk import FlyteSdkConnector, load
    registry = ConnectorRegistry(load("flyteplugins.bigquery.connector"))

``python -m supervisor serve --modules MODULE`` does the same for a flyte-sdk module.
The supervisor process runs one trio-asyncio loop; flyte-sdk code runs on it.
"""

from ._adapter import FlyteSdkConnector as FlyteSdkConnector
from ._adapter import NoAsyncioLoop as NoAsyncioLoop
from ._load import adapters_in as adapters_in
from ._load import load as load
from ._load import registered as registered
from ._meta import FlyteSdkMeta as FlyteSdkMeta

__all__ = [
    "FlyteSdkConnector",
    "FlyteSdkMeta",
    "NoAsyncioLoop",
    "adapters_in",
    "load",
    "registered",
]
