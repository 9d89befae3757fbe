"""The BigQuery connector as the end-to-end tests serve it (``--modules`` this module).

Made as the registry makes connectors (no arguments: ``BIGQUERY_EMULATOR_HOST`` points it
at the proxy, with anonymous credentials), then made quick: it polls every 0.2 s.
"""

from __future__ import annotations

from connectors.bigquery import BigQueryConnector

connector = BigQueryConnector(retry_deadline=2.0)
connector.poll_interval = 0.2
