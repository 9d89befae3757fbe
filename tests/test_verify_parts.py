"""The parts of verify-recovery: the verify connector, the plan, the report's checks, the
command's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from connectors import JobNotFound, Phase
from connectors.verify import VerifyConnector, VerifyJob, read_events, read_jobs
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from flyteproto.google.protobuf import Struct
from supervisor.cli import add_lost_evidence
from supervisor.journal import CreateState, DeleteState, JobRecord, Journal, Put
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


#: Runs one verify create in a child that SIGKILLs itself before its Nth file-system call
#: in the service's directory (open, write, close, link, rename, unlink, ...): a kill -9 of
#: the server at that point of the external call.
_KILLED_CREATE = """
import os, signal, sys
from pathlib import Path
import trio
from connectors.verify import VerifyConnector
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from flyteproto.google.protobuf import Struct

directory, kill_at = Path(sys.argv[1]).resolve(), int(sys.argv[2])
fds, calls = set(), [0]

def step():
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    calls[0] += 1

def by_path(fn):
    def call(path, *args, **kwargs):
        if str(Path(path).resolve()).startswith(str(directory)):
            step()
            result = fn(path, *args, **kwargs)
            if fn is OPEN:
                fds.add(result)
            return result
        return fn(path, *args, **kwargs)
    return call

def by_fd(fn):
    def call(fd, *args, **kwargs):
        if fd in fds:
            step()
        return fn(fd, *args, **kwargs)
    return call

OPEN = os.open
for name in ("open", "link", "rename", "replace", "unlink", "mkdir"):
    setattr(os, name, by_path(getattr(os, name)))
for name in ("write", "close", "fsync"):
    setattr(os, name, by_fd(getattr(os, name)))

metadata = TaskExecutionMetadata(
    task_execution_id=TaskExecutionIdentifier(task_id=Identifier(name="a"))
)
template = TaskTemplate(type="verify", custom=Struct.from_dict({"seconds": 0}))
connector = VerifyConnector(directory)
trio.run(lambda: connector.create(template, "", task_execution_metadata=metadata,
                                  idempotency_key="k"))
"""


@pytest.mark.slow  # a child process per kill point
async def test_a_kill_at_any_point_of_a_verify_create_leaves_a_job_the_retry_can_use(
    tmp_path: Path,
) -> None:
    """The server is killed mid-create; its resumed actor creates again with the same key
    (the reconcile) and polls: the job must be there, whole, once (a half-written job was
    "being created" forever: the lost job of verify-recovery's kill runs)."""
    for kill_at in range(50):
        directory = tmp_path / str(kill_at)
        directory.mkdir()
        child = await trio.run_process(
            [sys.executable, "-c", _KILLED_CREATE, str(directory), str(kill_at)],
            cwd=REPO_ROOT,
            check=False,
        )
        if child.returncode == 0:
            break  # the create made fewer calls: every point has been tried
        assert child.returncode == -9, child
        connector = VerifyConnector(directory)
        job = await connector.create(
            template(seconds=0), "", task_execution_metadata=metadata("a"), idempotency_key="k"
        )
        assert (await connector.get(job)).phase == Phase.SUCCEEDED, kill_at
        assert [j.execution for j in read_jobs(directory)] == ["//a/0"], kill_at
    else:
        pytest.fail("the create never finished")
    assert kill_at > 2  # the kill points were reached (open, write, close at least)


async def test_a_lost_job_is_reported_with_its_journal_row_external_calls_and_log_lines(
    tmp_path: Path,
) -> None:
    connector = VerifyConnector(tmp_path)
    await connector.create(
        template(seconds=3600), "", task_execution_metadata=metadata("a"), idempotency_key="k1"
    )
    t0 = 1_000_000.0
    url = f"sqlite:///{tmp_path}/j.db"
    record = JobRecord(
        job_id="k1",
        task_type="verify",
        task_type_version=0,
        connector="Verify connector",
        attempt=0,
        create_state=CreateState.CREATED,
        delete_state=DeleteState.NONE,
        phase=int(Phase.QUEUED),
        created_at=t0 + 1,
        updated_at=t0 + 2,
        resource_meta=b"m",
        message="polling failed",
    )
    async with Journal.open(url) as journal:
        await journal.write(Put(record, "created", '{"reconciled": true}'))
    (tmp_path / "server-1.err").write_text(
        'ts=1970-01-12T13:46:42.000Z level=warning job_id=k1 msg="k1: polling failed"\n'
        'ts=1970-01-12T13:46:42.000Z level=info msg="another job"\n'
    )
    lost = JobOutcome(name="//a/0", created=True, phase="QUEUED", lost="still QUEUED")
    lost.history.append("  1.00s CreateTask OK after 0.10s")
    fine = JobOutcome(name="//b/0", created=True, phase="SUCCEEDED", ended=True)
    report = Report(1, "s", [lost, fine], [], None, started_at=t0)
    add_lost_evidence(
        report, {"//a/0": "k1"}, journal_url=url, log_dir=tmp_path, record_dir=tmp_path
    )
    [entry] = report.to_json()["lost_jobs"]
    assert entry["name"] == "//a/0"
    assert entry["client"] == ["  1.00s CreateTask OK after 0.10s"]
    assert entry["journal"][0].startswith("job k1: create created, delete none, phase QUEUED")
    assert "created QUEUED" in entry["journal"][1]
    assert (
        entry["external"][-1]
        == f"jobs/k1.json: {len((tmp_path / 'jobs/k1.json').read_bytes())} bytes"
    )
    assert "create key k1 (new)" in entry["external"][0]
    line = 'ts=1970-01-12T13:46:42.000Z level=warning job_id=k1 msg="k1: polling failed"'
    assert entry["logs"] == [f"  2.00s server-1: {line}"]
    text = report.render()
    assert "lost job //a/0: still QUEUED" in text
    assert "    job k1: create created" in text
