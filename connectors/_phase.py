"""Task phases and the mapping of an external service's state strings onto them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from flyteproto.flyteidl2.core import TaskExecutionPhase as Phase

__all__ = ["TERMINAL_PHASES", "Phase", "StateMap", "is_terminal"]

_log = logging.getLogger(__name__)

#: Phases after which Propeller stops polling (RETRYABLE_FAILED makes it retry the task).
TERMINAL_PHASES: frozenset[Phase] = frozenset(
    {Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.RETRYABLE_FAILED}
)


def is_terminal(phase: Phase) -> bool:
    """True when ``phase`` is final: the job will not change again."""
    return phase in TERMINAL_PHASES


@dataclass(frozen=True)
class StateMap:
    """Maps an external service's state strings onto phases.

    An unknown state is not an error: it maps to RUNNING with a message saying so (and a
    warning in the log), because a task stuck on an unmapped state is worse than a task that
    keeps polling. Lookups are case-insensitive.
    """

    states: Mapping[str, Phase]
    service: str = "external service"
    _folded: Mapping[str, Phase] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", {k.upper(): v for k, v in self.states.items()})

    def phase(self, state: str) -> tuple[Phase, str]:
        """Return ``(phase, message)`` for ``state``; the message is empty when it is known."""
        known = self._folded.get(state.upper())
        if known is not None:
            return known, ""
        _log.warning("unknown %s state %r: reporting RUNNING", self.service, state)
        return Phase.RUNNING, f"unknown {self.service} state {state!r}: treated as running"
