"""``supervisor.verify.verify_recovery``: the crash schedule in-process, on MockClock."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate
from supervisor.verify import RecoveryViolation, verify_recovery

#: Every crash point, the one right after an external cancel (before its journal write)
#: included: a resumed cancel asks the service first (issue 11), so it does not cancel twice.
KINDS = ("crash", "crash-after-create", "crash-after-cancel")


def finisher(service: FakeService) -> Any:
    def end_job(meta: FakeMeta) -> None:
        job = service.jobs.get(meta.job_id)
        if job is not None and job.state in ("PENDING", "RUNNING"):
            service.set_state(meta.job_id, "DONE", {"done": True})

    return end_job


class CreatesTwice(FakeConnector):
    """Says it de-duplicates creates, but never passes the idempotency key on."""

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> FakeMeta:
        job = await self.service.create(None, inputs or {})
        return FakeMeta(job_id=job.job_id)


async def test_an_idempotent_connector_passes_every_crash(autojump_clock: Any) -> None:
    service = FakeService(latency=0.5)
    report = await verify_recovery(
        FakeConnector(service), end_job=finisher(service), kinds=KINDS, seed=1
    )
    assert report.ok
    assert report.created == 50
    assert not report.lost
    assert {ext.jobs for ext in (report.external or {}).values()} == {1}
    assert len(report.faults) == 6


async def test_a_create_that_is_not_idempotent_is_caught(autojump_clock: Any) -> None:
    service = FakeService(latency=0.5)
    with pytest.raises(RecoveryViolation) as caught:
        await verify_recovery(
            CreatesTwice(service), end_job=finisher(service), kinds=("crash-after-create",), seed=1
        )
    violations = caught.value.report.violations()
    assert any(v.startswith("duplicated: ") for v in violations), violations
