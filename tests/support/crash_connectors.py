"""A process connector with fault-injection hooks, for the crash tests of the real server.

Loaded by the server with ``--modules tests.support.crash_connectors``. ``CrashProcessConnector``
(task type ``crash-process``) is the local process connector, plus two hooks that let a
test ``kill -9`` the server at a chosen moment. The hooks are driven by files, because the
test runs in another process than the connector:

- **create**: when the template's custom Struct holds ``hold_create_until`` (a path), create
  starts the external process as usual, then touches ``create_held`` (a path) and blocks
  until ``hold_create_until`` exists. A kill -9 meanwhile lands between the external create
  and the journalled result; the create that the restarted server retries (same
  idempotency key) finds the release file and returns at once.
- **delete**: every call appends a line to ``<job dir>/delete-calls`` (so a test counts the
  external cancels), then blocks while ``<job dir>/hold-delete`` exists, before it cancels
  the process. A kill -9 meanwhile lands after the DeleteTask was answered (its intent
  journalled) and before the external cancel. After the cancel it appends a line to
  ``<job dir>/delete-done``, then blocks while ``<job dir>/hold-after-delete`` exists: a
  kill -9 meanwhile lands after the external cancel and before its reply is journalled.
"""

from __future__ import annotations

from typing import Any

import trio

from connectors.process import ProcessConnector, ProcessJob
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

__all__ = [
    "DELETE_CALLS",
    "DELETE_DONE",
    "HOLD_AFTER_DELETE",
    "HOLD_DELETE",
    "CrashProcessConnector",
]

#: In a job's directory: one line per call of ``delete`` ...
DELETE_CALLS = "delete-calls"
#: ... and, while it exists, ``delete`` waits before it cancels the process.
HOLD_DELETE = "hold-delete"
#: ... one line per cancel carried out, and while ``HOLD_AFTER_DELETE`` exists, ``delete``
#: waits before it returns.
DELETE_DONE = "delete-done"
HOLD_AFTER_DELETE = "hold-after-delete"
#: How often a held call looks at its file.
HOLD_POLL_INTERVAL = 0.02


class CrashProcessConnector(ProcessConnector):
    """The process connector (same job directories), holding create or delete on request."""

    name = "Crash-test process connector"
    task_type_name = "crash-process"

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
        job = await super().create(
            task_template,
            output_prefix,
            inputs,
            task_execution_metadata,
            idempotency_key=idempotency_key,
            **kwargs,
        )
        custom = task_template.custom.to_dict() if task_template.custom is not None else {}
        release = custom.get("hold_create_until")
        if release:
            await trio.Path(str(custom["create_held"])).touch()
            # A file from another process is the signal: there is no event to wait on.
            while not await trio.Path(str(release)).exists():  # noqa: ASYNC110
                await trio.sleep(HOLD_POLL_INTERVAL)
        return job

    async def delete(self, resource_meta: ProcessJob, **kwargs: Any) -> None:
        job_dir = trio.Path(resource_meta.job_dir)
        if await job_dir.is_dir():
            async with await (job_dir / DELETE_CALLS).open("a") as calls:
                await calls.write("delete\n")
        while await (job_dir / HOLD_DELETE).exists():  # noqa: ASYNC110
            await trio.sleep(HOLD_POLL_INTERVAL)
        await super().delete(resource_meta, **kwargs)
        if await job_dir.is_dir():
            async with await (job_dir / DELETE_DONE).open("a") as done:
                await done.write("done\n")
        while await (job_dir / HOLD_AFTER_DELETE).exists():  # noqa: ASYNC110
            await trio.sleep(HOLD_POLL_INTERVAL)
