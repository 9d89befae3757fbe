"""Structured logs: key=value or JSON lines, each line about a job naming the job.

A job's actor task calls ``bind_job(job_id, connector)``: a context variable that Trio
tasks (and worker threads started with ``trio.to_thread``) inherit, so every line logged
while working for the job — by the supervisor, the journal or the connector — carries
``job_id`` and ``connector`` without each call saying so. Code outside an actor passes
``extra=job_fields(...)``.

Log messages never hold request contents: secrets travel in ``connection`` and stay in
memory. Third-party loggers that would print raw headers at DEBUG (hpack) are held at INFO.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = [
    "JobFilter",
    "JsonFormatter",
    "KeyValueFormatter",
    "bind_job",
    "configure_logging",
    "job_fields",
]

_job: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "supervisor_job", default=None
)

#: Loggers that print wire data at DEBUG: never below INFO.
_QUIET = ("hpack", "h2")


def bind_job(job_id: str, connector: str) -> None:
    """Name this job in every line the current task (and what it starts) logs from now on.

    For a task that works for one job until it ends, like an actor: Trio gives each task a
    context of its own, so nothing needs restoring.
    """
    _job.set((job_id, connector))


def job_fields(job_id: str, connector: str) -> dict[str, str]:
    """``extra=`` for a line about a job logged outside its actor."""
    return {"job_id": job_id, "connector": connector}


class JobFilter(logging.Filter):
    """Adds ``job_id`` and ``connector`` from the job context to records that lack them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            bound = _job.get()
            if bound is not None:
                record.job_id, record.connector = bound
        return True


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    job_id = getattr(record, "job_id", None)
    if job_id is not None:
        fields["job_id"] = job_id
        fields["connector"] = getattr(record, "connector", "")
    fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    return fields


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=... job_id=... connector="..." msg="..."``: one line each."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_value(v)}" for k, v in _fields(record, self).items())


_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\r\t'):
        return text
    for raw, escape in _ESCAPES:
        text = text.replace(raw, escape)
    return f'"{text}"'


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, job_id and connector (if any), msg, exc."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self), ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send every log line to ``stream`` (stderr) as ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    handler.addFilter(JobFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    numeric = logging.getLevelName(level)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, numeric))
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.INFO, numeric))
