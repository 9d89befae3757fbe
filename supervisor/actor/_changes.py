"""A job's record changed by what a poll saw, or by the supervisor's own verdict.

``JobRecord`` (from the journal) is the truth. Records are immutable: every change makes a
new one, journalled before use.
"""

from __future__ import annotations

import dataclasses

from connectors import Phase

from ..journal import TERMINAL_PHASES, JobRecord
from ._observer import Observation, observation_of

__all__ = ["with_observation", "with_phase"]


def with_observation(record: JobRecord, seen: Observation, *, now: float) -> JobRecord:
    """``record`` updated with what a poll saw; ``finished_at`` set on a terminal phase."""
    finished_at = record.finished_at
    if finished_at is None and seen.phase in TERMINAL_PHASES:
        finished_at = now
    return dataclasses.replace(
        record,
        phase=seen.phase,
        message=seen.message,
        log_links=seen.log_links,
        outputs=seen.outputs,
        custom_info=seen.custom_info,
        updated_at=now,
        finished_at=finished_at,
    )


def with_phase(record: JobRecord, phase: Phase, message: str, *, now: float) -> JobRecord:
    seen = dataclasses.replace(observation_of(record), phase=int(phase), message=message)
    return with_observation(record, seen, now=now)
