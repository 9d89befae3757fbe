"""Restart-recovery verification: a seeded schedule of jobs and faults, and its report.

``python -m supervisor verify-recovery`` (in ``cli``) drives a real server with it;
``verify_recovery`` runs it in-process on Trio's virtual time against a connector (the
public crash test for connector authors: the SDK, ``connectors``, does not import us).
Sits on ``service`` and ``journal``.
"""

from ._inprocess import IN_PROCESS_FAULTS as IN_PROCESS_FAULTS
from ._inprocess import RecoveryViolation as RecoveryViolation
from ._inprocess import verify_recovery as verify_recovery
from ._plan import FAULT_KINDS as FAULT_KINDS
from ._plan import Plan as Plan
from ._plan import PlannedFault as PlannedFault
from ._plan import PlannedJob as PlannedJob
from ._plan import make_plan as make_plan
from ._report import External as External
from ._report import FaultOutcome as FaultOutcome
from ._report import JobOutcome as JobOutcome
from ._report import Report as Report

__all__ = [
    "FAULT_KINDS",
    "IN_PROCESS_FAULTS",
    "External",
    "FaultOutcome",
    "JobOutcome",
    "Plan",
    "PlannedFault",
    "PlannedJob",
    "RecoveryViolation",
    "Report",
    "make_plan",
    "verify_recovery",
]
