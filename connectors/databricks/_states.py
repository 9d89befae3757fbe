"""Databricks run states (``state.life_cycle_state`` / ``state.result_state``) as phases.

The life cycle state says where a run is; once it is TERMINATED (or SKIPPED) the result
state says how it ended. Flyte's own connector maps only a few of them and fails on the
rest (QUEUED, BLOCKED, WAITING_FOR_RETRY, ...); here every documented state has a phase and
an unknown one keeps the task running, with a message, instead of failing it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._phase import Phase, StateMap

__all__ = ["LIFE_CYCLE_STATES", "RESULT_STATES", "RunState", "run_state"]

_log = logging.getLogger(__name__)

#: Life cycle states. TERMINATED has no entry: its result state decides.
LIFE_CYCLE_STATES = StateMap(
    {
        "QUEUED": Phase.QUEUED,  # waiting for a concurrency slot or a cluster
        "PENDING": Phase.INITIALIZING,  # the cluster and context are being prepared
        "BLOCKED": Phase.WAITING_FOR_RESOURCES,  # blocked on an upstream dependency
        "RUNNING": Phase.RUNNING,
        "WAITING_FOR_RETRY": Phase.RUNNING,  # Databricks' own retry of a failed attempt
        "TERMINATING": Phase.RUNNING,  # finishing; the result is not final yet
        "SKIPPED": Phase.FAILED,  # never ran (a result state, when present, says why)
        "INTERNAL_ERROR": Phase.RETRYABLE_FAILED,  # Databricks' failure, not the task's
    },
    service="Databricks life cycle",
)

#: Result states of a TERMINATED (or SKIPPED) run.
RESULT_STATES = StateMap(
    {
        "SUCCESS": Phase.SUCCEEDED,
        "SUCCESS_WITH_FAILURES": Phase.SUCCEEDED,  # succeeded; some non-leaf tasks failed
        "FAILED": Phase.FAILED,
        "TIMEDOUT": Phase.FAILED,  # the run's own timeout_seconds
        "CANCELED": Phase.ABORTED,  # cancelled in Databricks (our own cancel is ours)
        "UPSTREAM_CANCELED": Phase.ABORTED,
        "UPSTREAM_FAILED": Phase.FAILED,
        "EXCLUDED": Phase.FAILED,  # skipped: its run conditions were not met
        "DISABLED": Phase.FAILED,  # skipped: disabled by a user
        "MAXIMUM_CONCURRENT_RUNS_REACHED": Phase.RETRYABLE_FAILED,  # a later try may fit
    },
    service="Databricks result",
)

_RESULT_DECIDES = frozenset({"TERMINATED", "SKIPPED"})


@dataclass(frozen=True)
class RunState:
    """A run's state as runs/get reports it, and the phase it maps to."""

    phase: Phase
    message: str
    life_cycle_state: str
    result_state: str


def run_state(run: Mapping[str, Any]) -> RunState:
    """The phase and user-facing message of a runs/get answer.

    The message names the state(s) and carries Databricks' ``state_message``; for a state
    this table does not know, it says so and the phase is RUNNING.
    """
    state = run.get("state")
    state = state if isinstance(state, Mapping) else {}
    life = _text(state.get("life_cycle_state")).upper()
    result = _text(state.get("result_state")).upper()
    detail = _text(state.get("state_message"))
    if not life:
        _log.warning("Databricks runs/get answered without a life cycle state: reporting RUNNING")
        phase, note = Phase.RUNNING, "Databricks reported no life cycle state yet"
    elif life == "INTERNAL_ERROR":
        phase, note = Phase.RETRYABLE_FAILED, ""
    elif life in _RESULT_DECIDES and result:
        phase, note = RESULT_STATES.phase(result)
    elif life == "TERMINATED":
        _log.warning("Databricks run terminated without a result state: reporting RUNNING")
        phase, note = Phase.RUNNING, "terminated without a result state yet"
    else:
        phase, note = LIFE_CYCLE_STATES.phase(life)
    label = f"{life or 'no state'} ({result})" if result else life or "no state"
    summary = f"{label}: {detail}" if detail else label
    return RunState(
        phase=phase,
        message=f"{note}; {summary}" if note else summary,
        life_cycle_state=life,
        result_state=result,
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
