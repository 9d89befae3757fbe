"""What a recovery run found: counts, fault recoveries, violations, and the verdict.

Built from what the client saw (every job's answers) and, when the connector shows them,
the external calls (``External``, one per task execution). The same report comes out of
``python -m supervisor verify-recovery`` and of the in-process ``verify_recovery``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["External", "FaultOutcome", "JobOutcome", "Report"]

#: A cancel may lag the DeleteTask answer by the external cancel's own time plus this
#: (or, when a fault comes first, the server's return plus as much).
CANCEL_SLACK = 1.0
#: How many job names a violation lists.
_SAMPLES = 5


@dataclass
class JobOutcome:
    """One task execution, as the client saw it."""

    name: str
    created: bool = False  # a CreateTask answered OK
    phase: str | None = None  # last phase GetTask reported
    ended: bool = False  # that phase is final
    metas: int = 0  # distinct resource_meta values CreateTask returned
    delete_planned: bool = False
    delete_ok_at: float | None = None  # when DeleteTask first answered OK
    lost: str = ""  # why the job is lost ("" when it is not)
    #: What the client saw, one line per change (calls that failed, phases), for a lost job.
    history: list[str] = field(default_factory=list)
    #: For a lost job, what the server side shows (``journal``, ``external``, ``logs``).
    evidence: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class External:
    """The external calls made for one task execution (as the service recorded them)."""

    jobs: int = 0  # external jobs made for it (creates the service did not de-duplicate)
    creates: int = 0  # create calls
    cancels: int = 0
    gets: int = 0
    ends_at: float | None = None  # when its (first) external job would end by itself


@dataclass
class FaultOutcome:
    index: int
    kind: str
    at: float  # seconds from the start of the run
    first_ok: float | None = None  # seconds from the fault to the first GetTask answered
    all_polled: float | None = None  # ... to every job live at the fault answered again
    live: int = 0  # jobs live at the fault


@dataclass
class Report:
    seed: int
    schedule: str
    jobs: list[JobOutcome]
    faults: list[FaultOutcome]
    external: dict[str, External] | None  # None: the connector shows no external calls
    probe_resends: int = 0  # CreateTask re-sent for the probe execution after faults
    probe_changes: int = 0  # ... answered with another resource_meta
    started_at: float = 0.0  # wall clock of the run's start (for ``ends_at``)
    cancel_seconds: float = 0.0  # how long an external cancel takes
    expect_success: bool = True  # every job nobody deleted must end SUCCEEDED
    notes: list[str] = field(default_factory=list)

    # -- figures ---------------------------------------------------------------------------

    @property
    def created(self) -> int:
        return sum(1 for job in self.jobs if job.created)

    @property
    def lost(self) -> list[JobOutcome]:
        return [job for job in self.jobs if job.lost]

    def phases(self) -> dict[str, int]:
        return dict(sorted(Counter(job.phase or "none" for job in self.jobs).items()))

    def duplicated(self) -> list[str]:
        if self.external is None:
            return []
        return sorted(name for name, ext in self.external.items() if ext.jobs > 1)

    def double_cancels(self) -> list[str]:
        if self.external is None:
            return []
        return sorted(name for name, ext in self.external.items() if ext.cancels > 1)

    def meta_changes(self) -> list[str]:
        return sorted(job.name for job in self.jobs if job.metas > 1)

    def cancels_lost(self) -> list[str]:
        """Deleted while running, never cancelled, and still running well after."""
        if self.external is None:
            return []
        lost = []
        for job in self.jobs:
            ext = self.external.get(job.name)
            if job.delete_ok_at is None or ext is None or ext.cancels or ext.ends_at is None:
                continue
            if ext.ends_at - self.started_at > self._cancel_due(job.delete_ok_at):
                lost.append(job.name)
        return sorted(lost)

    def _cancel_due(self, delete_ok_at: float) -> float:
        """When the cancel of a job deleted at ``delete_ok_at`` must have happened."""
        slack = self.cancel_seconds + CANCEL_SLACK
        due = delete_ok_at + slack
        for fault in sorted(self.faults, key=lambda f: f.at):
            if delete_ok_at <= fault.at <= due:
                back = fault.first_ok if fault.first_ok is not None else math.inf
                due = max(due, fault.at + back + slack)
        return due

    def unexpected_phases(self) -> list[str]:
        """Jobs nobody deleted that did not succeed (the verify connector's always do)."""
        if not self.expect_success:
            return []
        return sorted(
            job.name
            for job in self.jobs
            if job.ended and not job.delete_planned and job.phase != "SUCCEEDED"
        )

    def violations(self) -> list[str]:
        found = []
        checks = [
            ("lost", [job.name for job in self.lost], "job(s) lost"),
            ("duplicated", self.duplicated(), "task execution(s) with more than one external job"),
            ("double cancel", self.double_cancels(), "job(s) cancelled more than once"),
            (
                "cancel lost",
                self.cancels_lost(),
                "job(s) answered DeleteTask OK while running, never cancelled",
            ),
            (
                "resource_meta changed",
                self.meta_changes(),
                "task execution(s) answered with more than one resource_meta",
            ),
            ("unexpected phase", self.unexpected_phases(), "job(s) not deleted and not SUCCEEDED"),
        ]
        for name, items, text in checks:
            if items:
                found.append(f"{name}: {len(items)} {text} ({_sample(items)})")
        if self.probe_changes:
            found.append(
                f"resource_meta changed: {self.probe_changes} of {self.probe_resends} re-sent "
                "CreateTasks of the probe execution got another resource_meta"
            )
        return found

    @property
    def ok(self) -> bool:
        return not self.violations()

    # -- output ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        external = None
        if self.external is not None:
            values = list(self.external.values())
            external = {
                "create_calls": dict(sorted(Counter(e.creates for e in values).items())),
                "external_jobs": dict(sorted(Counter(e.jobs for e in values).items())),
                "cancels": dict(sorted(Counter(e.cancels for e in values).items())),
                "gets_max": max((e.gets for e in values), default=0),
            }
        return {
            "seed": self.seed,
            "schedule": self.schedule,
            "jobs": len(self.jobs),
            "created": self.created,
            "lost": len(self.lost),
            "phases": self.phases(),
            "deleted": sum(1 for job in self.jobs if job.delete_ok_at is not None),
            "duplicated": len(self.duplicated()),
            "double_cancels": len(self.double_cancels()),
            "cancels_lost": len(self.cancels_lost()),
            "resource_meta_changes": len(self.meta_changes()),
            "probe": {"resends": self.probe_resends, "changes": self.probe_changes},
            "external": external,
            "faults": [asdict(fault) for fault in self.faults],
            "notes": self.notes,
            "lost_jobs": [
                {"name": job.name, "lost": job.lost, "client": job.history, **job.evidence}
                for job in self.lost
            ],
            "violations": self.violations(),
            "verdict": "PASS" if self.ok else "FAIL",
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def render(self) -> str:
        """The report as a text table."""
        data = self.to_json()
        rows: list[tuple[str, str]] = [
            ("schedule", self.schedule),
            ("jobs created", f"{data['created']} of {data['jobs']}"),
            ("lost", str(data["lost"])),
            ("ended", ", ".join(f"{k} {v}" for k, v in data["phases"].items())),
            ("deleted (DeleteTask OK)", str(data["deleted"])),
        ]
        external = data["external"]
        if external is None:
            rows.append(("external calls", "not visible for this connector"))
        else:
            rows += [
                ("duplicated", str(data["duplicated"])),
                ("external jobs per execution", _counts(external["external_jobs"])),
                ("create calls per execution", _counts(external["create_calls"])),
                ("cancels per execution", _counts(external["cancels"])),
                ("cancels lost", str(data["cancels_lost"])),
            ]
            if external["gets_max"]:
                rows.append(("polls of one job (max)", str(external["gets_max"])))
        rows.append(
            (
                "resource_meta changes",
                f"{data['resource_meta_changes']} executions; probe: {self.probe_changes} "
                f"of {self.probe_resends} re-sent CreateTasks",
            )
        )
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        if self.faults:
            kind_width = max(4, *(len(fault.kind) for fault in self.faults))
            lines += [
                "",
                f"fault  {'kind'.ljust(kind_width)}  at       live  first GetTask OK  "
                "all jobs polled again",
            ]
            for fault in self.faults:
                first, every = _seconds(fault.first_ok), _seconds(fault.all_polled)
                if not fault.live:
                    first = every = "no live job"
                lines.append(
                    f"{fault.index + 1:>5}  {fault.kind.ljust(kind_width)}  "
                    f"{fault.at:>6.1f}s  {fault.live:>4}  {first:>16}  {every:>21}"
                )
        lines += [f"note: {note}" for note in self.notes]
        for job in self.lost:
            lines += ["", f"lost job {job.name}: {job.lost}"]
            for part, items in {"client": job.history, **job.evidence}.items():
                lines += [f"  {part}:", *(f"    {item}" for item in items or ["-"])]
        lines.append("")
        for violation in self.violations():
            lines.append(f"VIOLATION {violation}")
        lines.append(f"verdict: {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)


def _sample(items: list[str]) -> str:
    more = f", ... {len(items) - _SAMPLES} more" if len(items) > _SAMPLES else ""
    return ", ".join(items[:_SAMPLES]) + more


def _counts(counts: dict[int, int]) -> str:
    return ", ".join(f"{n}: {jobs}" for n, jobs in counts.items()) or "-"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"
