"""The ``verify`` connector: a tiny external service in a directory, that writes down every call.

For ``python -m supervisor verify-recovery``: served with ``--modules connectors.verify``
(it is not an entry point, so no server loads it by accident). Its external service is the
directory named by ``SUPERVISOR_VERIFY_DIR`` (the server's environment, never a request):

- ``events.log``: one JSON line per external call (``create``, ``get``, ``cancel``),
  appended with one ``write`` on an ``O_APPEND`` descriptor, so lines from any number of
  server processes (and a kill -9 at any moment) never interleave or tear;
- ``jobs/KEY.json``: one external job, written whole under another name (``tmp/``) and
  then hard-linked into place, so it appears whole or not at all, kill -9 included (a
  second create with the same idempotency key finds it: the service de-duplicates, as
  BigQuery does with job ids); ``jobs/KEY.cancelled``: the cancel took effect.

The files, not ``events.log``, say which external jobs exist (``read_jobs``): a kill
between a job's creation and its ``create`` line leaves a job that no line calls new.

A job runs for the template's ``custom.seconds`` (wall clock) and then SUCCEEDED with
output ``done = true``; a cancel before that makes it ABORTED. ``custom.cancel_seconds``
is how long a cancel call takes before it takes effect (a call that dies with its server
meanwhile never happened). ``custom.idempotent = false`` makes the service ignore the key,
like a service without idempotency tokens (a create retried after a crash then makes a
second external job, which the report counts as a duplicate).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

from ._connector import AsyncConnector
from ._errors import JobNotFound, PermanentError
from ._phase import Phase
from ._resource import Resource, ResourceMeta

__all__ = [
    "DIR_ENV_VAR",
    "EVENTS_FILE",
    "TASK_TYPE",
    "ExternalJob",
    "VerifyConnector",
    "VerifyEvent",
    "VerifyJob",
    "execution_name",
    "read_events",
    "read_jobs",
]

TASK_TYPE = "verify"
DIR_ENV_VAR = "SUPERVISOR_VERIFY_DIR"
EVENTS_FILE = "events.log"
#: Default run time of a job, when the template's custom says nothing.
DEFAULT_SECONDS = 5.0

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class VerifyEvent:
    """One external call, as ``events.log`` holds it."""

    at: float  # wall clock
    op: str  # "create", "get" or "cancel"
    key: str
    execution: str  # the task execution it was made for ("" when unknown)
    new: bool = False  # create: a new external job (not one the service de-duplicated)


@dataclass(frozen=True)
class ExternalJob:
    """One external job, as ``jobs/KEY.json`` holds it."""

    key: str
    execution: str
    started: float  # wall clock
    seconds: float
    cancelled: bool  # a cancel took effect

    @property
    def ends_at(self) -> float:
        """When it ends by itself (wall clock)."""
        return self.started + self.seconds


@dataclass
class VerifyJob(ResourceMeta):
    key: str


def execution_name(metadata: TaskExecutionMetadata | None) -> str:
    """``execution/node/task/attempt`` of a task execution id ("" when it has none)."""
    execution = metadata.task_execution_id if metadata is not None else None
    if execution is None:
        return ""
    node = execution.node_execution_id
    run = node.execution_id.name if node is not None and node.execution_id is not None else ""
    task = execution.task_id.name if execution.task_id is not None else ""
    return f"{run}/{node.node_id if node is not None else ''}/{task}/{execution.retry_attempt}"


def read_events(directory: Path) -> list[VerifyEvent]:
    """Every event recorded in ``directory`` so far (a torn last line is skipped)."""
    path = directory / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(VerifyEvent(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return events


def read_jobs(directory: Path) -> list[ExternalJob]:
    """Every external job made in ``directory`` so far."""
    found = []
    for path in sorted((directory / "jobs").glob("*.json")):
        try:
            job = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cancelled = path.with_suffix(".cancelled").exists()
        found.append(
            ExternalJob(path.stem, job["execution"], job["started"], job["seconds"], cancelled)
        )
    return found


class _Service:
    """The directory, read and written from worker threads (blocking file calls)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.jobs = directory / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.drafts = directory / "tmp"
        self.drafts.mkdir(exist_ok=True)

    def record(self, op: str, key: str, execution: str, *, new: bool = False) -> None:
        line = json.dumps(
            {"at": time.time(), "op": op, "key": key, "execution": execution, "new": new}
        )
        fd = os.open(self.directory / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def create(self, key: str, execution: str, seconds: float, cancel_seconds: float) -> None:
        body = json.dumps(
            {
                "started": time.time(),
                "seconds": seconds,
                "cancel_seconds": cancel_seconds,
                "execution": execution,
            }
        )
        # Whole or not at all: written under a name of its own, then linked into place (a
        # link never replaces a file). A kill before the link leaves a stray in ``tmp/``.
        draft = self.drafts / f"{key}.{uuid.uuid4().hex}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, body.encode())
        finally:
            os.close(fd)
        try:
            os.link(draft, self.jobs / f"{key}.json")
        except FileExistsError:
            self.record("create", key, execution, new=False)
            return
        finally:
            os.unlink(draft)
        self.record("create", key, execution, new=True)

    def job(self, key: str) -> dict[str, Any]:
        try:
            job: dict[str, Any] = json.loads((self.jobs / f"{key}.json").read_text())
        except FileNotFoundError:
            raise JobNotFound(key) from None
        except ValueError:
            # Never seen (jobs appear whole): a broken service, as the poll says.
            raise RuntimeError(f"job {key} is not a whole job") from None
        return job

    def get(self, key: str) -> Resource:
        job = self.job(key)
        self.record("get", key, job.get("execution", ""))
        if (self.jobs / f"{key}.cancelled").exists():
            return Resource(phase=Phase.ABORTED, message="cancelled")
        left = job["started"] + job["seconds"] - time.time()
        if left > 0:
            return Resource(phase=Phase.RUNNING, message=f"running, {left:.1f}s left")
        return Resource(phase=Phase.SUCCEEDED, message="done", outputs={"done": True})

    def cancel(self, key: str) -> None:
        job = self.job(key)
        (self.jobs / f"{key}.cancelled").touch()
        self.record("cancel", key, job.get("execution", ""))


class VerifyConnector(AsyncConnector[VerifyJob]):
    """Task type ``verify``: jobs that run for a while in ``SUPERVISOR_VERIFY_DIR``."""

    name = "Verify connector"
    task_type_name = TASK_TYPE
    task_type_version = 0
    metadata_type = VerifyJob
    supports_idempotent_create = True
    poll_interval = 1.0
    max_concurrent_calls = 64
    call_timeout = 30.0

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    def _service(self) -> _Service:
        directory = self._directory
        if directory is None:
            value = os.environ.get(DIR_ENV_VAR)
            if not value:
                raise PermanentError(f"the verify connector needs {DIR_ENV_VAR} (a directory)")
            directory = self._directory = Path(value)
        return _Service(directory)

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> VerifyJob:
        custom = task_template.custom.to_dict() if task_template.custom is not None else {}
        seconds = float(custom.get("seconds", DEFAULT_SECONDS))
        cancel_seconds = float(custom.get("cancel_seconds", 0.0))
        key = kwargs.get("idempotency_key")
        if not custom.get("idempotent", True) or not key:
            key = uuid.uuid4().hex
        service = self._service()
        execution = execution_name(task_execution_metadata)
        await trio.to_thread.run_sync(service.create, key, execution, seconds, cancel_seconds)
        return VerifyJob(key=key)

    async def get(self, resource_meta: VerifyJob, **kwargs: Any) -> Resource:
        service = self._service()
        return await trio.to_thread.run_sync(service.get, _checked(resource_meta.key))

    async def delete(self, resource_meta: VerifyJob, **kwargs: Any) -> None:
        service = self._service()
        key = _checked(resource_meta.key)
        job = await trio.to_thread.run_sync(service.job, key)
        await trio.sleep(float(job.get("cancel_seconds", 0.0)))
        await trio.to_thread.run_sync(service.cancel, key)


def _checked(key: str) -> str:
    """A key names a file in the directory: nothing else. Errors: PermanentError."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise PermanentError(f"not a verify job key: {key!r}")
    return key
