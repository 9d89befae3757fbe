"""The connector of the replica tests: every external call leaves one line in a shared file.

Loaded by each replica with ``--modules tests.support.replica_connectors``. Task type
``replica-test``; the template's custom Struct holds ``dir``, a directory every replica can
see. The "external service" is that directory:

- each call appends one line to ``<dir>/calls.log`` (``O_APPEND``, one ``write``, so lines of
  concurrent processes never interleave): ``create <job> <pid>``, ``get <job> <pid> <t>``
  (``t``: ``time.monotonic()``, one clock for every process of the machine) and
  ``cancel <job> <pid>``; a create takes the custom Struct's ``create_seconds`` (after its
  line is written: the external job exists, the supervisor does not know it yet). ``<job>``
  is the external id: the supervisor's idempotency key,
  one per task, so two ``create`` lines for one id are a duplicated external create;
- a job runs until ``<dir>/<job>.done`` exists, then SUCCEEDS (a test decides when jobs
  end); a cancelled job is ABORTED.

``REPLICA_TEST_POLL_INTERVAL`` (seconds, default 1) sets the poll interval: the tests keep it
short so that a takeover shows in the log within a second. ``REPLICA_TEST_WHO`` (an integer)
stands in for the pid in the log, for a process that runs in a PID namespace of its own
(where every replica is pid 1).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from connectors import AsyncConnector, Phase, Resource, ResourceMeta
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

__all__ = [
    "CALLS_LOG",
    "POLL_INTERVAL_ENV",
    "TASK_TYPE",
    "WHO_ENV",
    "ReplicaTestConnector",
    "ReplicaTestMeta",
    "done_path",
]

TASK_TYPE = "replica-test"
#: The shared call log, in the job's directory.
CALLS_LOG = "calls.log"
POLL_INTERVAL_ENV = "REPLICA_TEST_POLL_INTERVAL"
WHO_ENV = "REPLICA_TEST_WHO"
#: Who makes the calls, in the log: this process's pid, unless told otherwise.
_WHO = os.environ.get(WHO_ENV) or str(os.getpid())

_descriptors: dict[str, int] = {}


def done_path(directory: Path, job: str) -> Path:
    """The file whose existence makes ``job`` succeed."""
    return directory / f"{job}.done"


def _cancelled_path(directory: str, job: str) -> str:
    return os.path.join(directory, f"{job}.cancelled")


def _record(directory: str, line: str) -> None:
    """Append one line to the call log, in one write (the descriptor is kept open)."""
    path = os.path.join(directory, CALLS_LOG)
    descriptor = _descriptors.get(path)
    if descriptor is None:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _descriptors[path] = descriptor
    os.write(descriptor, f"{line}\n".encode())


@dataclass
class ReplicaTestMeta(ResourceMeta):
    job: str  # the external id
    dir: str


class ReplicaTestConnector(AsyncConnector[ReplicaTestMeta]):
    """Runs until a done-file exists; records each create, get and cancel with its pid.

    The calls are a stat and a small append to a local file: done on the Trio loop, they
    take less time than a thread hand-off would.
    """

    name = "Replica-test connector"
    task_type_name = TASK_TYPE
    metadata_type = ReplicaTestMeta
    supports_idempotent_create = True  # the external id is the idempotency key
    poll_interval = float(os.environ.get(POLL_INTERVAL_ENV, "1.0"))

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> ReplicaTestMeta:
        custom = task_template.custom.to_dict() if task_template.custom is not None else {}
        directory = str(custom["dir"])
        job = idempotency_key or f"job-{time.monotonic_ns()}"
        _record(directory, f"create {job} {_WHO}")
        await trio.sleep(float(custom.get("create_seconds") or 0.0))
        return ReplicaTestMeta(job=job, dir=directory)

    async def get(self, resource_meta: ReplicaTestMeta, **kwargs: Any) -> Resource:
        job, directory = resource_meta.job, resource_meta.dir
        _record(directory, f"get {job} {_WHO} {time.monotonic():.6f}")
        if os.path.exists(_cancelled_path(directory, job)):  # noqa: ASYNC240 (a local stat)
            return Resource(phase=Phase.ABORTED, message="cancelled")
        if done_path(Path(directory), job).exists():
            return Resource(phase=Phase.SUCCEEDED, message="done")
        return Resource(phase=Phase.RUNNING, message="running")

    async def delete(self, resource_meta: ReplicaTestMeta, **kwargs: Any) -> None:
        job, directory = resource_meta.job, resource_meta.dir
        _record(directory, f"cancel {job} {_WHO}")
        os.close(os.open(_cancelled_path(directory, job), os.O_WRONLY | os.O_CREAT, 0o644))
