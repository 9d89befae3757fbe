"""The parts of verify-recovery: the verify connector, the plan, the report's checks, the
command's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from connectors import JobNotFound, Phase
from connectors.verify import VerifyConnector, VerifyJob, read_events
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from flyteproto.google.protobuf import Struct
from supervisor.verify import External, FaultOutcome, JobOutcome, Plan, Report, make_plan
from tests.support.server import REPO_ROOT


def metadata(name: str) -> TaskExecutionMetadata:
    return TaskExecutionMetadata(
        task_execution_id=TaskExecutionIdentifier(task_id=Identifier(name=name))
    )


def template(**custom: object) -> TaskTemplate:
    return TaskTemplate(type="verify", custom=Struct.from_dict(dict(custom)))


async def test_the_verify_service_records_calls_and_deduplicates_by_key(tmp_path: Path) -> None:
    connector = VerifyConnector(tmp_path)
    first = await connector.create(
        template(seconds=0), "", task_execution_metadata=metadata("a"), idempotency_key="k1"
    )
    again = await connector.create(
        template(seconds=0), "", task_execution_metadata=metadata("a"), idempotency_key="k1"
    )
    assert first == again == VerifyJob(key="k1")
    assert (await connector.get(first)).phase == Phase.SUCCEEDED
    await connector.delete(first)
    assert (await connector.get(first)).phase == Phase.ABORTED
    events = read_events(tmp_path)
    assert [(e.op, e.new) for e in events] == [
        ("create", True),
        ("create", False),
        ("get", False),
        ("cancel", False),
        ("get", False),
    ]
    assert {e.execution for e in events} == {"//a/0"}


async def test_a_running_verify_job_and_an_unknown_one(tmp_path: Path) -> None:
    connector = VerifyConnector(tmp_path)
    job = await connector.create(template(seconds=3600), "", idempotency_key="k2")
    assert (await connector.get(job)).phase == Phase.RUNNING
    with pytest.raises(JobNotFound):
        await connector.get(VerifyJob(key="nope"))


async def test_a_non_idempotent_verify_service_makes_a_job_per_create(tmp_path: Path) -> None:
    connector = VerifyConnector(tmp_path)
    one = await connector.create(template(idempotent=False), "", idempotency_key="k")
    two = await connector.create(template(idempotent=False), "", idempotency_key="k")
    assert one != two
    assert [e.new for e in read_events(tmp_path)] == [True, True]
    await trio.lowlevel.checkpoint()


def test_one_seed_one_schedule() -> None:
    def plan_of(seed: int, kinds: tuple[str, ...] = ("kill", "term")) -> Plan:
        return make_plan(
            seed, jobs=20, faults=3, duration=30.0, job_seconds=5.0, delete_share=0.3, kinds=kinds
        )

    plan = plan_of(7)
    assert plan == plan_of(7)
    assert plan != plan_of(8)
    assert len(plan.faults) == 3
    assert "seed 7" in plan.describe()
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan_of(7, ("reboot",))


def report(**external: External) -> Report:
    jobs = [
        JobOutcome(name="a", created=True, phase="SUCCEEDED", ended=True, metas=1),
        JobOutcome(
            name="b", created=True, phase="SUCCEEDED", ended=True, metas=1,
            delete_planned=True, delete_ok_at=10.0,
        ),
    ]  # fmt: skip
    found = {"a": External(jobs=1, creates=1), "b": External(jobs=1, creates=1, ends_at=11.0)}
    found.update(external)
    return Report(seed=1, schedule="s", jobs=jobs, faults=[], external=found)


def test_a_clean_report_passes() -> None:
    assert report().ok
    assert "verdict: PASS" in report().render()


def test_two_external_jobs_for_one_execution_are_duplicated() -> None:
    found = report(a=External(jobs=2, creates=2))
    assert found.violations() == [
        "duplicated: 1 task execution(s) with more than one external job (a)"
    ]
    assert found.to_json()["verdict"] == "FAIL"


def test_two_cancels_are_a_double_cancel() -> None:
    assert (
        report(b=External(jobs=1, cancels=2, ends_at=11.0))
        .violations()[0]
        .startswith("double cancel: 1 job(s)")
    )


def test_a_job_running_long_after_its_delete_without_a_cancel_lost_it() -> None:
    assert (
        report(b=External(jobs=1, ends_at=100.0))
        .violations()[0]
        .startswith("cancel lost: 1 job(s)")
    )


def test_a_fault_after_the_delete_gives_the_cancel_until_the_server_is_back() -> None:
    found = report(b=External(jobs=1, ends_at=19.0))  # cancel due at 10.5 + 8 + 1 s
    found.faults = [FaultOutcome(0, "kill", at=10.5, first_ok=8.0)]
    assert found.ok


def test_a_lost_job_and_a_changed_meta_are_named() -> None:
    found = report()
    found.jobs[0].lost = "CreateTask never answered OK"
    found.jobs[1].metas = 2
    assert [v.split(":")[0] for v in found.violations()] == ["lost", "resource_meta changed"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "give --serve (start a server) or --address (a deployment)"),
        (["--address", "h:1", "--journal", "x"], "unrecognized arguments: --journal x"),
        (
            ["--address", "h:1", "--kinds", "term", "--kill-cmd", "k"],
            "term faults need --serve (a deployment is faulted by --kill-cmd)",
        ),
        (["--serve", "--kinds", "db"], "db faults need --db-stop-cmd and --db-start-cmd"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(args: list[str], error: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "verify-recovery", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (2, f"error: {error}\n")
