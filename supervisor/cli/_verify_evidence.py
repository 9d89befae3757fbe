"""What the server side shows of each job a recovery run lost: its journal row and events,
its external calls (the verify connector's records) and the server log lines about it.

A lost job is a finding to explain, so the report carries the evidence with it: the run's
directory may be gone, the journal reused. Times are seconds from the start of the run, as
the fault times of the report are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from connectors import Phase
from connectors.verify import read_events
from flyteproto.flyteidl2.connector import CreateTaskRequest

from ..journal import JournalError, JournalReader, safe_url
from ..verify import JobOutcome, Report
from ..wire import job_id_for

__all__ = ["add_lost_evidence", "job_id_of"]

#: Server log lines shown per lost job.
LOG_LINES = 30
#: Log lines of other jobs shown when they are warnings or errors this close (seconds) to
#: one of the lost job's events.
LOG_WINDOW = 1.0


def job_id_of(request_bytes: bytes) -> str:
    """The job id the server derives from a serialised CreateTaskRequest."""
    request = CreateTaskRequest.parse(request_bytes)
    template = request.template
    assert template is not None
    return job_id_for(template.type, template.task_type_version, request.task_execution_metadata)


def add_lost_evidence(
    report: Report,
    job_ids: Mapping[str, str],
    *,
    journal_url: str | None,
    log_dir: Path | None,
    record_dir: Path | None,
) -> None:
    """Fill ``evidence`` of every lost job of ``report`` (``job_ids``: name -> job id)."""
    lost = [job for job in report.lost if job.name in job_ids]
    if not lost:
        return
    t0 = report.started_at
    times: dict[str, list[float]] = {job.name: [] for job in lost}
    if journal_url:
        _journal(lost, job_ids, journal_url, t0, times)
    if record_dir is not None:
        _external(lost, job_ids, record_dir, t0)
    if log_dir is not None:
        _logs(lost, job_ids, log_dir, t0, times)


def _journal(
    lost: list[JobOutcome],
    job_ids: Mapping[str, str],
    url: str,
    t0: float,
    times: dict[str, list[float]],
) -> None:
    try:
        with JournalReader.open(url) as reader:
            for job in lost:
                job_id = job_ids[job.name]
                record = reader.get(job_id)
                if record is None:
                    job.evidence["journal"] = [f"job {job_id}: no row"]
                    continue
                meta = "set" if record.resource_meta else "none"
                lines = [
                    f"job {job_id}: create {record.create_state}, delete {record.delete_state}, "
                    f"phase {_phase(record.phase)}, meta {meta}, "
                    f"updated {record.updated_at - t0:.2f}s, message {record.message!r}"
                ]
                for event in reader.events(job_id):
                    times[job.name].append(event.at)
                    lines.append(
                        f"{event.at - t0:6.2f}s #{event.seq} {event.kind} "
                        f"{_phase(event.phase)} {event.detail}"
                    )
                job.evidence["journal"] = lines
    except (JournalError, ValueError) as exc:
        for job in lost:
            job.evidence["journal"] = [f"cannot read the journal {safe_url(url)}: {exc}"]


def _external(
    lost: list[JobOutcome], job_ids: Mapping[str, str], record_dir: Path, t0: float
) -> None:
    """The verify connector's record of each job: its calls and its external job file."""
    by_name: dict[str, list[str]] = {job.name: [] for job in lost}
    last: dict[str, tuple[str, int]] = {}
    for event in read_events(record_dir):
        lines = by_name.get(event.execution)
        if lines is None:
            continue
        text = f"{event.op} key {event.key[:12]}" + (" (new)" if event.new else "")
        seen, count = last.get(event.execution, ("", 0))
        if text == seen and lines:  # polls: one line for a run of them
            last[event.execution] = (text, count + 1)
            lines[-1] = f"{lines[-1].split(' (x')[0]} (x{count + 1}, to {event.at - t0:.2f}s)"
            continue
        last[event.execution] = (text, 1)
        lines.append(f"{event.at - t0:6.2f}s {text}")
    for job in lost:
        key = job_ids[job.name]
        path = record_dir / "jobs" / f"{key}.json"
        try:
            body = path.read_bytes()
            state = f"{len(body)} bytes" + ("" if _whole(body) else ", not a whole job")
        except FileNotFoundError:
            state = "absent"
        if path.with_suffix(".cancelled").exists():
            state += ", cancelled"
        by_name[job.name].append(f"jobs/{key}.json: {state}")
        job.evidence["external"] = by_name[job.name]


def _whole(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _logs(
    lost: list[JobOutcome],
    job_ids: Mapping[str, str],
    log_dir: Path,
    t0: float,
    times: dict[str, list[float]],
) -> None:
    """Log lines naming the job, and warnings or errors of the server near its events."""
    files = sorted(log_dir.glob("server-*.err"), key=lambda p: int(p.stem.split("-")[-1]))
    lines = [(path.stem, line) for path in files for line in _read(path)]
    for job in lost:
        job_id = job_ids[job.name]
        near = times[job.name]
        found = []
        for source, line in lines:
            at = _log_time(line)
            mine = job_id in line
            close = at is not None and any(abs(at - t) <= LOG_WINDOW for t in near)
            if mine or (close and ("level=warn" in line or "level=error" in line)):
                when = f"{at - t0:6.2f}s" if at is not None else "      ?"
                found.append(f"{when} {source}: {line}")
        more = [f"... {len(found) - LOG_LINES} more"] if len(found) > LOG_LINES else []
        job.evidence["logs"] = found[:LOG_LINES] + more


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _log_time(line: str) -> float | None:
    """The wall time of a ``ts=...Z`` log line."""
    if not line.startswith("ts="):
        return None
    try:
        return datetime.fromisoformat(line[3:].split(" ", 1)[0]).timestamp()
    except ValueError:
        return None


def _phase(value: int) -> str:
    try:
        return Phase(value).name or str(value)
    except ValueError:
        return str(value)
