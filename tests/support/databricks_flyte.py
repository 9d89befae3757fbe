"""flyte-sdk's Databricks plugin (``flyteplugins-databricks``), unmodified, as the end-to-end
tests serve it (``--modules`` this module): importing the plugin registers its connector
with flyte-sdk's registry; here it is hosted through the adapter, made quick (it polls every
0.1 s). It speaks only https: the test's fake workspace serves TLS, trusted through
``SSL_CERT_FILE``.
"""

from __future__ import annotations

import importlib
import warnings

from connectors._imports import plain_asyncio_loops

with warnings.catch_warnings(), plain_asyncio_loops():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from flyte.connectors import ConnectorRegistry as SdkRegistry

    # The import registers the plugin's connector with flyte-sdk's registry.
    importlib.import_module("flyteplugins.databricks.connector")

from connectors.flytesdk import FlyteSdkConnector

connector = FlyteSdkConnector(SdkRegistry.get_connector("databricks"), poll_interval=0.1)
