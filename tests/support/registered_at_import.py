"""Connectors written the way flyte-sdk documents them: ``ConnectorRegistry.register(X())``
at module level, against our SDK. ``serve --modules tests.support.registered_at_import``
serves them unchanged.

``LedgerConnector`` needs a constructor argument (where its "external service" keeps its
jobs: one JSON file per job under ``$LEDGER_ROOT``, so a test in another process can see
which jobs run); its ``create`` takes ``custom["create_seconds"]`` (a slow submit: a
client's deadline can expire first). ``TokenConnector`` is defined and registered both
(registered once); its ``create`` requires the connection secret ``api_token``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from connectors import (
    AsyncConnector,
    ConnectorRegistry,
    JobNotFound,
    Phase,
    Resource,
    ResourceMeta,
)
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

LEDGER_TASK_TYPE = "ledger"
TOKEN_TASK_TYPE = "token"
#: The environment variable naming the ledger's directory.
LEDGER_ROOT_ENV = "LEDGER_ROOT"


@dataclass
class LedgerMeta(ResourceMeta):
    job_id: str


class LedgerConnector(AsyncConnector[LedgerMeta]):
    name = "Ledger connector"
    task_type_name = LEDGER_TASK_TYPE
    metadata_type = LedgerMeta
    poll_interval = 0.05

    def __init__(self, root: Path) -> None:
        self.root = root

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every job the "service" has: job id -> its JSON."""
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.root.glob("*.json"))}

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> LedgerMeta:
        custom = task_template.custom.to_dict() if task_template.custom else {}
        await trio.sleep(float(custom.get("create_seconds", 0)))
        execution = task_execution_metadata.task_execution_id if task_execution_metadata else None
        job_id = uuid.uuid4().hex
        self._write(
            job_id,
            {
                "state": "RUNNING",
                "task": execution.task_id.name if execution and execution.task_id else "",
                "attempt": execution.retry_attempt if execution else 0,
                "cancels": 0,
            },
        )
        return LedgerMeta(job_id)

    async def get(self, resource_meta: LedgerMeta, **kwargs: Any) -> Resource:
        entry = self._read(resource_meta.job_id)
        phase = Phase.RUNNING if entry["state"] == "RUNNING" else Phase.ABORTED
        return Resource(phase=phase, message=entry["state"].lower())

    async def delete(self, resource_meta: LedgerMeta, **kwargs: Any) -> None:
        entry = self._read(resource_meta.job_id)
        entry["state"], entry["cancels"] = "CANCELLED", entry["cancels"] + 1
        self._write(resource_meta.job_id, entry)

    def _read(self, job_id: str) -> dict[str, Any]:
        path = self.root / f"{job_id}.json"
        if not path.exists():
            raise JobNotFound(job_id)
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    def _write(self, job_id: str, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = self.root / f"{job_id}.tmp"
        scratch.write_text(json.dumps(entry))
        scratch.replace(self.root / f"{job_id}.json")


@dataclass
class TokenMeta(ResourceMeta):
    job_id: str


class TokenConnector(AsyncConnector[TokenMeta]):
    name = "Token connector"
    task_type_name = TOKEN_TASK_TYPE
    metadata_type = TokenMeta

    async def create(  # type: ignore[override]  # a required secret: narrower on purpose
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        *,
        api_token: str,
        **kwargs: Any,
    ) -> TokenMeta:
        return TokenMeta(job_id=f"token-{len(api_token)}")

    async def get(self, resource_meta: TokenMeta, **kwargs: Any) -> Resource:
        return Resource(phase=Phase.SUCCEEDED, message="done")

    async def delete(self, resource_meta: TokenMeta, **kwargs: Any) -> None:
        return None


ConnectorRegistry.register(LedgerConnector(Path(os.environ.get(LEDGER_ROOT_ENV, ".ledger"))))
ConnectorRegistry.register(TokenConnector())
