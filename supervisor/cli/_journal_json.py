"""Journal records as JSON and words, for ``journal ls|show|stats`` and ``journal web``.

One module both commands import (neither imports the other's helpers): the JSON of a job,
an event and the summary; what the supervisor is doing with a job (``state_of``); phase
names and ages both ways (``parse_phase``/``phase_name``, ``parse_age``/``age_text``). Of
the journalled request only names are shown (``request_summary``), never values.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from typing import Any

from betterproto2 import Casing

from connectors import Phase

from ..journal import (
    CreateState,
    DeleteState,
    EventRecord,
    JobRecord,
    JournalSummary,
    is_unfinished,
    phase_is_final,
)

__all__ = [
    "age_text",
    "event_json",
    "job_json",
    "loads_or_text",
    "meta_text",
    "output_names",
    "parse_age",
    "parse_phase",
    "phase_name",
    "request_summary",
    "state_of",
    "summary_json",
]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


# -- words ---------------------------------------------------------------------------------


def parse_age(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``7d``, ``1w``, ``1h30m``: seconds."""
    value = text.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _AGE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise argparse.ArgumentTypeError(f"not an age like 90s, 10m, 2h, 7d or 1h30m: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_phase(text: str) -> int:
    """A phase name (``running``, ``RETRYABLE_FAILED``) or number."""
    value = text.strip().upper()
    if value.isdigit():
        return int(value)
    for phase in Phase:
        if phase.name == value:
            return int(phase)
    names = ", ".join(p.name or "" for p in Phase)
    raise argparse.ArgumentTypeError(f"not a phase ({names}): {text!r}")


def phase_name(phase: int) -> str:
    try:
        return Phase(phase).name or str(phase)
    except ValueError:
        return str(phase)


def age_text(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# -- JSON ---------------------------------------------------------------------------------


def state_of(record: JobRecord) -> str:
    """What the supervisor is doing with the job, in a word or two."""
    if record.create_state == CreateState.PENDING:
        return "creating"
    if record.delete_state == DeleteState.REQUESTED:
        return "cancelling"
    if record.delete_state == DeleteState.DONE:
        return "cancelled"
    if record.create_state == CreateState.FAILED:
        return "create failed"
    if record.create_state == CreateState.ABANDONED:
        return "abandoned"
    return "done" if phase_is_final(record) else "live"


def job_json(record: JobRecord) -> dict[str, Any]:
    """A job as JSON: plain values; ``resource_meta`` as text (or ``base64:...``)."""
    return {
        "job_id": record.job_id,
        "task_type": record.task_type,
        "task_type_version": record.task_type_version,
        "connector": record.connector,
        "attempt": record.attempt,
        "phase": phase_name(record.phase),
        "state": state_of(record),
        "live": is_unfinished(record),
        "create_state": record.create_state.value,
        "delete_state": record.delete_state.value,
        "owner": record.owner,  # the replica whose actor runs it; None: nobody's (released)
        "epoch": record.epoch,
        "message": record.message,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "deadline": record.deadline,
        "resource_meta": meta_text(record.resource_meta),
        "log_links": [_snake_keys(link) for link in json.loads(record.log_links)],
        "custom_info": json.loads(record.custom_info) if record.custom_info else None,
        "outputs": output_names(record.outputs),
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "kind": event.kind,
        "phase": phase_name(event.phase),
        "detail": loads_or_text(event.detail),
    }


def summary_json(summary: JournalSummary) -> dict[str, Any]:
    oldest = summary.oldest_live
    return {
        "revision": summary.revision,
        "jobs": summary.jobs,
        "live": summary.live,
        "pending_creates": summary.pending_creates,
        "pending_deletes": summary.pending_deletes,
        "last_write": summary.last_write,
        "oldest_live": job_json(oldest) if oldest is not None else None,
        "counts": [
            {"connector": c.connector, "phase": phase_name(c.phase), "jobs": c.jobs, "live": c.live}
            for c in summary.counts
        ],
        "owners": [{"owner": o.owner, "jobs": o.jobs, "live": o.live} for o in summary.owners],
    }


def request_summary(create_request: bytes | None) -> dict[str, Any] | None:
    """What the journalled CreateTaskRequest says, by name only: no values of inputs,
    secrets, configs or environment variables."""
    if not create_request:
        return None
    from flyteproto.flyteidl2 import connector as pb

    request = pb.CreateTaskRequest.parse(create_request)
    metadata = request.task_execution_metadata
    connection = request.connection
    execution = metadata.task_execution_id if metadata is not None else None
    return {
        "output_prefix": request.output_prefix,
        "inputs": sorted(lit.name for lit in request.inputs.literals) if request.inputs else [],
        "task_execution_id": (
            execution.to_dict(casing=Casing.SNAKE) if execution is not None else None
        ),
        "namespace": metadata.namespace if metadata is not None else "",
        "environment_variables": sorted(metadata.environment_variables) if metadata else [],
        "secrets": sorted(connection.secrets) if connection is not None else [],
        "configs": sorted(connection.configs) if connection is not None else [],
    }


def meta_text(meta: bytes | None) -> str | None:
    if meta is None:
        return None
    try:
        return meta.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(meta).decode()


def output_names(outputs: bytes | None) -> list[str] | None:
    if outputs is None:
        return None
    from flyteproto.flyteidl2.task import Outputs

    return [literal.name for literal in Outputs.parse(outputs).literals]


def _snake_keys(value: Any) -> Any:
    """Protobuf JSON (``showWhilePending``) with the snake_case keys of the rest of our JSON."""
    if isinstance(value, dict):
        return {_SNAKE.sub(r"_\1", k).lower(): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(item) for item in value]
    return value


_SNAKE = re.compile(r"(?<=[a-z0-9])([A-Z])")


def loads_or_text(text: str) -> Any:
    """JSON ``text`` as a value; text that is not JSON as it is."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
