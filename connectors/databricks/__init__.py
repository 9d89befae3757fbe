"""The Databricks connector: Flyte ``databricks`` tasks as Jobs API 2.1 one-time runs.

    from connectors.databricks import DatabricksConnector, DatabricksRun

The token comes from the request's connection secret ``databricks_token``; the workspace
from the template's ``databricksInstance`` or the connection config ``databricks_instance``.
Calls go over ``httpx`` on Trio (install the ``databricks`` extra).
"""

from ._connector import DatabricksConnector as DatabricksConnector
from ._connector import DatabricksRun as DatabricksRun
from ._errors import DatabricksRequestError as DatabricksRequestError
from ._errors import DatabricksTransientError as DatabricksTransientError
from ._states import LIFE_CYCLE_STATES as LIFE_CYCLE_STATES
from ._states import RESULT_STATES as RESULT_STATES

__all__ = [
    "LIFE_CYCLE_STATES",
    "RESULT_STATES",
    "DatabricksConnector",
    "DatabricksRequestError",
    "DatabricksRun",
    "DatabricksTransientError",
]
