"""The local process connector: each job is a detached OS process on this machine."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from flyteproto.flyteidl2.connector import GetTaskLogsResponse, TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

from .._connector import AsyncConnector
from .._errors import PermanentError
from .._resource import Resource, ResourceMeta
from ._jobdir import JobDir, NotOurJob, group_alive, job_id_for_key, signal_group
from ._logs import log_responses
from ._spec import JobSpec, encode_inputs

__all__ = ["DEFAULT_ROOT", "ROOT_ENV_VAR", "TERMINATE_GRACE", "ProcessConnector", "ProcessJob"]

#: The environment variable naming the directory that holds the job directories ...
ROOT_ENV_VAR = "SUPERVISOR_PROCESS_ROOT"
#: ... and the directory used without it, relative to the working directory.
DEFAULT_ROOT = os.path.join(".supervisor", "jobs")
#: Seconds a cancelled job gets to exit after SIGTERM before its process group is killed.
TERMINATE_GRACE = 5.0
#: How often a cancel checks whether the process group has exited.
_TERMINATE_POLL = 0.05


@dataclass
class ProcessJob(ResourceMeta):
    """The handle of one process job: its id and its (absolute) directory."""

    job_id: str
    job_dir: str


class ProcessConnector(AsyncConnector[ProcessJob]):
    """Runs a task's command as a detached process that outlives the supervisor.

    ``task_template.custom`` holds ``{"command": [argv...], "env": {...}, "cwd": "..."}``
    (``env`` and ``cwd`` optional). The command's environment is the supervisor's, plus
    ``env``, plus ``FLYTE_INPUTS_FILE`` (the inputs as JSON), ``FLYTE_OUTPUTS_FILE`` (where
    it may write its outputs as a JSON object), ``FLYTE_JOB_DIR`` and ``FLYTE_OUTPUT_PREFIX``.

    It trusts no resource_meta: a ``job_dir`` must be ``root/job_id`` once symlinks are
    resolved (else ``PermanentError``: nothing is read, written or signalled), and a delete
    signals a process group only while its leader is the process the runner started.

    Keyword-only options: ``root``, the directory of job directories (default: the
    ``SUPERVISOR_PROCESS_ROOT`` environment variable, else ``.supervisor/jobs``; made
    absolute here), and ``terminate_grace``, the seconds between SIGTERM and SIGKILL on
    delete.
    """

    # Unannotated: the types (and ClassVar-ness) are the base class's.
    name = "Local process connector"
    task_type_name = "process"
    task_type_version = 0
    metadata_type = ProcessJob
    supports_idempotent_create = True
    # A local process is cheap to look at: poll often so demos feel immediate.
    poll_interval = 1.0

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        terminate_grace: float = TERMINATE_GRACE,
    ) -> None:
        if root is None:
            root = os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT
        self._root = Path(root).absolute()
        self._terminate_grace = terminate_grace

    @property
    def root(self) -> Path:
        """The directory holding one directory per job."""
        return self._root

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> ProcessJob:
        """Start the command in a new job directory.

        With an ``idempotency_key`` the directory is named from it, and a create for a job
        that was started already returns that job without starting anything.
        Errors: ValueError when the template has no valid command.
        """
        spec = JobSpec.from_template(task_template, output_prefix)
        job_id = job_id_for_key(idempotency_key) if idempotency_key else uuid.uuid4().hex
        job_dir = self._root / job_id
        await trio.to_thread.run_sync(JobDir(job_dir).start, spec, encode_inputs(inputs))
        return ProcessJob(job_id=job_id, job_dir=str(job_dir))

    def _job(self, meta: ProcessJob) -> JobDir:
        """The meta's job directory, confined to the root (blocking: resolves symlinks).

        Errors: PermanentError for a directory outside the root.
        """
        try:
            return JobDir.confined(self._root, meta.job_id, meta.job_dir)
        except NotOurJob as exc:
            raise PermanentError(str(exc)) from None

    async def get(self, resource_meta: ProcessJob, **kwargs: Any) -> Resource:
        return await trio.to_thread.run_sync(lambda: self._job(resource_meta).state())

    async def delete(self, resource_meta: ProcessJob, **kwargs: Any) -> None:
        """Cancel the job: SIGTERM its process group, SIGKILL after the grace period.

        Idempotent: a finished, cancelled or unknown job needs nothing.
        Cancellation: safe; the job stays marked cancelled and a repeated delete signals
        the process group again.
        """
        job = await trio.to_thread.run_sync(self._job, resource_meta)
        pgid = await trio.to_thread.run_sync(job.request_cancel)
        if pgid is None or not signal_group(pgid, signal.SIGTERM):
            return
        with trio.move_on_after(self._terminate_grace):
            # Nothing to wait on: the group is not our child, so poll it.
            while group_alive(pgid):  # noqa: ASYNC110
                await trio.sleep(_TERMINATE_POLL)
            return
        if await trio.to_thread.run_sync(job.group_to_signal) == pgid:  # still the job's
            signal_group(pgid, signal.SIGKILL)

    async def get_logs(
        self, resource_meta: ProcessJob, *, lines: int | None = None, **kwargs: Any
    ) -> AsyncIterator[GetTaskLogsResponse]:
        """The job's stdout lines, then its stderr lines (the last ``lines`` of them).

        Errors: FileNotFoundError when the job directory does not exist; PermanentError
        for one outside the root, or log files that are symlinks.
        """
        job = await trio.to_thread.run_sync(self._job, resource_meta)
        if not await trio.Path(job.path).is_dir():
            raise FileNotFoundError(f"job directory not found: {job.path}")
        for log in (job.stdout, job.stderr):
            if await trio.Path(log).is_symlink():
                raise PermanentError(f"{log.name} of job {job.path.name} is a symlink: refused")
        async for response in log_responses(job.stdout, job.stderr, lines=lines):
            yield response
