"""The local process connector: the embedded default, for demos and restart tests.

Each job is a detached OS process that outlives the supervisor; its state lives in a job
directory, so a restarted supervisor (or another connector object) reads it back.

    from connectors.process import ProcessConnector, ProcessJob
"""

from ._connector import DEFAULT_ROOT as DEFAULT_ROOT
from ._connector import ROOT_ENV_VAR as ROOT_ENV_VAR
from ._connector import TERMINATE_GRACE as TERMINATE_GRACE
from ._connector import ProcessConnector as ProcessConnector
from ._connector import ProcessJob as ProcessJob

__all__ = ["DEFAULT_ROOT", "ROOT_ENV_VAR", "TERMINATE_GRACE", "ProcessConnector", "ProcessJob"]
