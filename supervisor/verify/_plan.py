"""The schedule of a recovery run, drawn from one seed: the same seed, the same run.

Times are seconds from the start of the run. Jobs are created over the first 70% of
``duration``; faults are planned between 10% and 60% of it (a fault waits for the recovery
from the one before, so it often comes later: still while jobs run); a share of jobs is
deleted while it runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "Plan", "PlannedFault", "PlannedJob", "make_plan"]

#: kill: SIGKILL (a crash); term: SIGTERM (a graceful restart); db: the database goes away.
FAULT_KINDS = ("kill", "term", "db")


@dataclass(frozen=True)
class PlannedJob:
    index: int
    create_at: float
    seconds: float  # how long the external job runs
    delete_at: float | None  # when DeleteTask is sent (None: never)


@dataclass(frozen=True)
class PlannedFault:
    index: int
    at: float
    kind: str


@dataclass(frozen=True)
class Plan:
    seed: int
    duration: float
    jobs: tuple[PlannedJob, ...]
    faults: tuple[PlannedFault, ...]

    def describe(self) -> str:
        """One line: what a replay needs to know."""
        deletes = sum(1 for job in self.jobs if job.delete_at is not None)
        faults = ", ".join(f"{f.kind}@{f.at:.1f}s" for f in self.faults) or "none"
        return (
            f"seed {self.seed}: {len(self.jobs)} jobs over {self.duration:g}s "
            f"({deletes} deleted), faults: {faults}"
        )


def make_plan(
    seed: int,
    *,
    jobs: int,
    faults: int,
    duration: float,
    job_seconds: float,
    delete_share: float,
    kinds: tuple[str, ...],
    allowed: tuple[str, ...] = FAULT_KINDS,
) -> Plan:
    """Errors: ValueError for a kind not in ``allowed`` or faults without kinds."""
    unknown = [kind for kind in kinds if kind not in allowed]
    if unknown:
        raise ValueError(f"unknown fault kind(s): {', '.join(unknown)}")
    if faults and not kinds:
        raise ValueError("faults need at least one kind")
    rng = random.Random(seed)
    planned = []
    for index in range(jobs):
        create_at = rng.uniform(0.0, duration * 0.7)
        seconds = rng.uniform(job_seconds * 0.2, job_seconds)
        delete_at = None
        if rng.random() < delete_share:
            delete_at = create_at + rng.uniform(0.1, 0.9) * seconds
        planned.append(PlannedJob(index, create_at, seconds, delete_at))
    times = sorted(rng.uniform(duration * 0.1, duration * 0.6) for _ in range(faults))
    fault_list = tuple(PlannedFault(i, at, rng.choice(kinds)) for i, at in enumerate(times))
    return Plan(seed, duration, tuple(planned), fault_list)
