"""The local process connector, with real detached processes in a temporary directory.

These are process-level tests: they wait for real processes by polling ``get`` under a
deadline, never with fixed sleeps.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import trio

import connectors.process
from connectors import PermanentError, Phase, Resource, is_terminal
from connectors.process import ProcessConnector, ProcessJob
from connectors.process._jobdir import job_id_for_key
from flyteproto.flyteidl2.core import TaskTemplate
from flyteproto.google.protobuf import Struct

DEADLINE = 10.0
POLL = 0.02


def python(code: str) -> list[str]:
    """The argv running ``code`` with this interpreter."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def template(custom: dict[str, Any] | None) -> TaskTemplate:
    return TaskTemplate(
        type="process", custom=Struct.from_dict(custom) if custom is not None else None
    )


def command_template(command: list[str], **extra: Any) -> TaskTemplate:
    return template({"command": command, **extra})


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "jobs"
    yield root
    # Leave no job running behind a failed test.
    for pid_file in root.glob("*/pid"):
        if pid_file.parent.is_symlink():  # planted by a forgery test: not a job of ours
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)


@pytest.fixture
def connector(root: Path) -> ProcessConnector:
    return ProcessConnector(root=root, terminate_grace=0.5)


async def wait_for_phase(connector: ProcessConnector, job: ProcessJob, *phases: Phase) -> Resource:
    with trio.fail_after(DEADLINE):
        while True:
            resource = await connector.get(job)
            if resource.phase in phases:
                return resource
            await trio.sleep(POLL)


async def wait_terminal(connector: ProcessConnector, job: ProcessJob) -> Resource:
    with trio.fail_after(DEADLINE):
        while not is_terminal((resource := await connector.get(job)).phase):  # noqa: ASYNC110
            await trio.sleep(POLL)
    return resource


async def wait_for_file_text(path: Path, text: str) -> None:
    with trio.fail_after(DEADLINE):
        while text not in await read_text(path):  # noqa: ASYNC110
            await trio.sleep(POLL)


async def read_text(path: Path) -> str:
    """The file's text; empty while it does not exist."""
    try:
        return await trio.Path(path).read_text()
    except FileNotFoundError:
        return ""


async def exists(path: Path) -> bool:
    return await trio.Path(path).exists()


async def wait_group_gone(pgid: int) -> None:
    with trio.fail_after(DEADLINE):
        while group_exists(pgid):  # noqa: ASYNC110
            await trio.sleep(POLL)


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def child_processes() -> set[int]:
    """This process's children, running or not yet reaped (Linux: /proc)."""
    children: set[int] = set()
    for listing in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        children.update(int(pid) for pid in listing.read_text().split())
    return children


def job_pid(job: ProcessJob) -> int:
    return int(Path(job.job_dir, "pid").read_text().split()[0])


SLEEPER = python(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("ready", flush=True)
    time.sleep(60)
    """
)


# The public surface ----------------------------------------------------------------------


def test_public_names() -> None:
    assert sorted(connectors.process.__all__) == [
        "DEFAULT_ROOT",
        "ProcessConnector",
        "ProcessJob",
        "ROOT_ENV_VAR",
        "TERMINATE_GRACE",
    ]
    assert ProcessConnector.task_type_name == "process"
    assert ProcessConnector.task_type_version == 0
    assert ProcessConnector.name == "Local process connector"
    assert ProcessConnector.metadata_type is ProcessJob
    assert ProcessConnector.supports_idempotent_create


def test_process_job_encodes_and_decodes() -> None:
    job = ProcessJob(job_id="abc", job_dir="/tmp/jobs/abc")
    assert ProcessJob.decode(job.encode()) == job


def test_root_defaults_to_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SUPERVISOR_PROCESS_ROOT", str(tmp_path / "from-env"))
    assert ProcessConnector().root == tmp_path / "from-env"


def test_root_defaults_to_supervisor_jobs_under_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SUPERVISOR_PROCESS_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    connector = ProcessConnector(root=None)
    monkeypatch.chdir("/")
    assert connector.root == tmp_path / ".supervisor" / "jobs"


# Templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("custom", "match"),
    [
        (None, "command"),
        ({}, "command"),
        ({"command": []}, "command"),
        ({"command": "echo hi"}, "command"),
        ({"command": ["echo", 1]}, "command"),
        ({"command": ["echo"], "env": {"A": 1}}, "env"),
        ({"command": ["echo"], "env": ["A"]}, "env"),
        ({"command": ["echo"], "cwd": ["/"]}, "cwd"),
    ],
)
async def test_create_rejects_template_without_valid_command(
    connector: ProcessConnector, root: Path, custom: dict[str, Any] | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        await connector.create(template(custom), "")
    assert not await exists(root)


# Outcomes ------------------------------------------------------------------------------


async def test_succeeded_job_reports_outputs_from_outputs_file(
    connector: ProcessConnector,
) -> None:
    code = """
        import json, os
        inputs = json.load(open(os.environ["FLYTE_INPUTS_FILE"]))
        print("hello from the job")
        with open(os.environ["FLYTE_OUTPUTS_FILE"], "w") as f:
            json.dump({"y": inputs["x"] + 1, "tags": ["a", "b"]}, f)
    """
    job = await connector.create(command_template(python(code)), "", inputs={"x": 2})
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.SUCCEEDED, resource.message
    assert resource.outputs == {"y": 3, "tags": ["a", "b"]}
    assert [(log.name, log.uri) for log in resource.log_links] == [
        ("stdout", f"file://{job.job_dir}/stdout")
    ]
    assert await read_text(Path(job.job_dir, "stdout")) == "hello from the job\n"


async def test_succeeded_job_without_outputs_file_has_no_outputs(
    connector: ProcessConnector,
) -> None:
    job = await connector.create(command_template(python("pass")), "")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.SUCCEEDED
    assert resource.outputs is None


async def test_outputs_file_that_is_not_an_object_fails_the_job(
    connector: ProcessConnector,
) -> None:
    code = """
        import os
        open(os.environ["FLYTE_OUTPUTS_FILE"], "w").write("[1, 2]")
    """
    job = await connector.create(command_template(python(code)), "")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.FAILED
    assert "outputs.json must hold a JSON object" in resource.message


async def test_failed_job_reports_exit_code_and_stderr_tail(
    connector: ProcessConnector,
) -> None:
    code = """
        import sys
        for i in range(20):
            print(f"line {i}", file=sys.stderr)
        print("boom: the disk is full", file=sys.stderr)
        sys.exit(3)
    """
    job = await connector.create(command_template(python(code)), "")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.FAILED
    assert "exited with code 3" in resource.message
    assert "boom: the disk is full" in resource.message
    assert "line 19" in resource.message
    assert "line 0\n" not in resource.message


async def test_job_killed_by_a_signal_reports_the_signal(connector: ProcessConnector) -> None:
    code = """
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """
    job = await connector.create(command_template(python(code)), "")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.FAILED
    assert "SIGKILL" in resource.message
    assert "-9" in resource.message


async def test_command_that_cannot_start_fails_the_job(
    connector: ProcessConnector, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-program")
    job = await connector.create(command_template([missing]), "")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.FAILED
    assert "cannot start" in resource.message
    assert "127" in resource.message


async def test_command_gets_template_env_cwd_and_job_files(
    connector: ProcessConnector, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    code = """
        import json, os
        names = ["GREETING", "FLYTE_JOB_DIR", "FLYTE_INPUTS_FILE", "FLYTE_OUTPUTS_FILE",
                 "FLYTE_OUTPUT_PREFIX", "PATH"]
        seen = {name: os.environ.get(name) for name in names}
        seen["cwd"] = os.getcwd()
        json.dump(seen, open(os.environ["FLYTE_OUTPUTS_FILE"], "w"))
    """
    custom = {"env": {"GREETING": "hi"}, "cwd": str(workdir)}
    job = await connector.create(command_template(python(code), **custom), "s3://bucket/out")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.SUCCEEDED, resource.message
    assert resource.outputs == {
        "GREETING": "hi",
        "FLYTE_JOB_DIR": job.job_dir,
        "FLYTE_INPUTS_FILE": f"{job.job_dir}/inputs.json",
        "FLYTE_OUTPUTS_FILE": f"{job.job_dir}/outputs.json",
        "FLYTE_OUTPUT_PREFIX": "s3://bucket/out",
        "PATH": os.environ.get("PATH"),
        "cwd": str(workdir),
    }


async def test_inputs_file_holds_the_inputs_as_json(connector: ProcessConnector) -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    inputs = {"n": 1, "name": "x", "when": when, "wait": datetime.timedelta(minutes=1)}
    job = await connector.create(command_template(python("pass")), "", inputs=inputs)
    assert json.loads(await read_text(Path(job.job_dir, "inputs.json"))) == {
        "n": 1,
        "name": "x",
        "when": "2024-05-01T12:30:00+00:00",
        "wait": 60.0,
    }
    spec = json.loads(await read_text(Path(job.job_dir, "spec.json")))
    assert spec["command"] == python("pass")
    assert spec["cwd"] == os.getcwd()


# Intermediate states -------------------------------------------------------------------


async def test_running_job_is_running(connector: ProcessConnector) -> None:
    job = await connector.create(command_template(SLEEPER), "")
    resource = await wait_for_phase(connector, job, Phase.RUNNING)
    assert resource.custom_info is not None
    assert resource.custom_info["pid"] == job_pid(job)
    await connector.delete(job)


async def test_job_directory_without_pid_is_initializing(
    connector: ProcessConnector, root: Path
) -> None:
    (root / "half-made").mkdir(parents=True)
    job = ProcessJob(job_id="half-made", job_dir=str(root / "half-made"))
    assert (await connector.get(job)).phase == Phase.INITIALIZING


async def test_dead_process_without_exit_status_has_vanished(
    connector: ProcessConnector, root: Path
) -> None:
    job_dir = root / "vanished"
    job_dir.mkdir(parents=True)
    dead = await trio.lowlevel.open_process([sys.executable, "-c", "pass"])
    await dead.wait()
    (job_dir / "pid").write_text(str(dead.pid))
    resource = await connector.get(ProcessJob(job_id="vanished", job_dir=str(job_dir)))
    assert resource.phase == Phase.FAILED
    assert resource.message == "process vanished without an exit status"


async def test_missing_job_directory_fails_with_a_clear_message(
    connector: ProcessConnector, root: Path
) -> None:
    job = ProcessJob(job_id="gone", job_dir=str(root / "gone"))
    resource = await connector.get(job)
    assert resource.phase == Phase.FAILED
    assert resource.message == f"job directory not found: {root / 'gone'}"


# Idempotent create ---------------------------------------------------------------------


async def test_create_with_same_idempotency_key_starts_one_process(
    connector: ProcessConnector, tmp_path: Path
) -> None:
    counter = tmp_path / "starts"
    code = f"""
        open({str(counter)!r}, "a").write("started\\n")
    """
    task = command_template(python(code))
    first = await connector.create(task, "", idempotency_key="exec-1")
    second = await connector.create(task, "", idempotency_key="exec-1")
    assert second == first
    assert first.job_id == "exec-1"
    assert (await wait_terminal(connector, first)).phase == Phase.SUCCEEDED
    third = await connector.create(task, "", idempotency_key="exec-1")
    assert third == first
    assert counter.read_text() == "started\n"


async def test_create_with_other_key_starts_another_job(
    connector: ProcessConnector,
) -> None:
    task = command_template(python("pass"))
    first = await connector.create(task, "", idempotency_key="exec-1")
    second = await connector.create(task, "", idempotency_key="exec-2")
    assert first.job_dir != second.job_dir
    await wait_terminal(connector, first)
    await wait_terminal(connector, second)


async def test_create_without_key_starts_a_new_job_each_time(
    connector: ProcessConnector,
) -> None:
    task = command_template(python("pass"))
    first = await connector.create(task, "")
    second = await connector.create(task, "")
    assert first.job_dir != second.job_dir
    assert Path(first.job_dir).parent == connector.root


def test_keys_are_sanitised_without_collisions() -> None:
    assert job_id_for_key("exec-1_a.0") == "exec-1_a.0"
    slashed = job_id_for_key("proj/dev/exec:1")
    underscored = job_id_for_key("proj_dev_exec_1")
    assert "/" not in slashed
    assert slashed.startswith("proj_dev_exec_1-")
    assert slashed != underscored
    assert not job_id_for_key("../..").startswith(".")
    assert "/" not in job_id_for_key("../..")
    assert len(job_id_for_key("x" * 500)) <= 100


async def test_create_starts_a_job_whose_create_crashed_before_its_runner_started(
    connector: ProcessConnector, root: Path
) -> None:
    # As a supervisor killed between making the directory and starting the runner leaves it.
    (root / "exec-1").mkdir(parents=True)
    code = """
        import json, os
        json.dump({"ok": True}, open(os.environ["FLYTE_OUTPUTS_FILE"], "w"))
    """
    job = await connector.create(command_template(python(code)), "", idempotency_key="exec-1")
    assert job.job_dir == str(root / "exec-1")
    resource = await wait_terminal(connector, job)
    assert resource.phase == Phase.SUCCEEDED
    assert resource.outputs == {"ok": True}


async def test_create_after_delete_of_unstarted_job_starts_nothing(
    connector: ProcessConnector, root: Path, tmp_path: Path
) -> None:
    (root / "exec-1").mkdir(parents=True)
    job = ProcessJob(job_id="exec-1", job_dir=str(root / "exec-1"))
    await connector.delete(job)
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"
    again = await connector.create(command_template(python(code)), "", idempotency_key="exec-1")
    assert again == job
    assert (await connector.get(job)).phase == Phase.ABORTED
    assert not marker.exists()


# Detached processes --------------------------------------------------------------------


async def test_create_leaves_no_child_process_behind(connector: ProcessConnector) -> None:
    # Other tests' helpers (the BigQuery emulator) may be children of this process too.
    before = child_processes()
    job = await connector.create(command_template(SLEEPER), "")
    await wait_for_phase(connector, job, Phase.RUNNING)
    pid = job_pid(job)
    assert pid not in child_processes()
    assert child_processes() <= before
    assert os.getpgid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)
    await connector.delete(job)


async def test_job_outlives_its_connector(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = f"""
        import json, os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        json.dump({{"done": 1}}, open(os.environ["FLYTE_OUTPUTS_FILE"], "w"))
    """
    first = ProcessConnector(root=root)
    job = await first.create(command_template(python(code)), "", idempotency_key="exec-1")
    await wait_for_phase(first, job, Phase.RUNNING)
    del first

    second = ProcessConnector(root=root)
    restored = ProcessJob.decode(job.encode())
    assert (await second.get(restored)).phase == Phase.RUNNING
    go.touch()
    resource = await wait_terminal(second, restored)
    assert resource.phase == Phase.SUCCEEDED
    assert resource.outputs == {"done": 1}


async def test_job_survives_kill_9_of_the_supervisor(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job_code = f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
    """
    supervisor_code = f"""
        import sys, time, trio
        from connectors.process import ProcessConnector
        from flyteproto.flyteidl2.core import TaskTemplate
        from flyteproto.google.protobuf import Struct

        async def main():
            custom = Struct.from_dict({{"command": {python(job_code)!r}}})
            job = await ProcessConnector(root={str(root)!r}).create(
                TaskTemplate(custom=custom), "", idempotency_key="exec-1"
            )
            sys.stdout.buffer.write(job.encode() + b"\\n")
            sys.stdout.flush()
            time.sleep(60)

        trio.run(main)
    """
    supervisor = await trio.lowlevel.open_process(python(supervisor_code), stdout=PIPE)
    assert supervisor.stdout is not None
    encoded = b""
    with trio.fail_after(DEADLINE):
        while not encoded.endswith(b"\n"):
            chunk = await supervisor.stdout.receive_some()
            assert chunk, "the supervisor exited before creating the job"
            encoded += chunk
    supervisor.kill()
    assert await supervisor.wait() == -signal.SIGKILL
    await supervisor.stdout.aclose()

    job = ProcessJob.decode(encoded.strip())
    connector = ProcessConnector(root=root)
    assert (await wait_for_phase(connector, job, Phase.RUNNING)).phase == Phase.RUNNING
    go.touch()
    assert (await wait_terminal(connector, job)).phase == Phase.SUCCEEDED


# Delete --------------------------------------------------------------------------------


async def test_delete_running_job_aborts_it_and_ends_its_process_group(
    connector: ProcessConnector,
) -> None:
    job = await connector.create(command_template(SLEEPER), "")
    await wait_for_file_text(Path(job.job_dir, "stdout"), "ready")
    pgid = job_pid(job)
    await connector.delete(job)
    resource = await connector.get(job)
    assert resource.phase == Phase.ABORTED
    assert resource.message == "cancelled"
    await wait_group_gone(pgid)
    exit_status = Path(job.job_dir, "exit_status")
    await wait_for_file_text(exit_status, "returncode")
    assert json.loads(await read_text(exit_status)) == {"returncode": -signal.SIGTERM}
    assert (await connector.get(job)).phase == Phase.ABORTED


async def test_delete_escalates_to_sigkill_when_sigterm_is_ignored(
    root: Path,
) -> None:
    connector = ProcessConnector(root=root, terminate_grace=0.2)
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    job = await connector.create(command_template(python(code)), "")
    await wait_for_file_text(Path(job.job_dir, "stdout"), "ready")
    pgid = job_pid(job)
    await connector.delete(job)
    await wait_group_gone(pgid)
    exit_status = Path(job.job_dir, "exit_status")
    await wait_for_file_text(exit_status, "returncode")
    assert json.loads(await read_text(exit_status)) == {"returncode": -signal.SIGKILL}
    assert (await connector.get(job)).phase == Phase.ABORTED


async def test_delete_twice_is_fine(connector: ProcessConnector) -> None:
    job = await connector.create(command_template(SLEEPER), "")
    await wait_for_phase(connector, job, Phase.RUNNING)
    pgid = job_pid(job)
    await connector.delete(job)
    await connector.delete(job)
    await wait_group_gone(pgid)
    await connector.delete(job)
    assert (await connector.get(job)).phase == Phase.ABORTED


async def test_delete_of_finished_job_keeps_its_outcome(connector: ProcessConnector) -> None:
    job = await connector.create(command_template(python("pass")), "")
    assert (await wait_terminal(connector, job)).phase == Phase.SUCCEEDED
    await connector.delete(job)
    assert (await connector.get(job)).phase == Phase.SUCCEEDED
    assert not await exists(Path(job.job_dir, "cancelled"))


async def test_delete_of_missing_job_is_fine(connector: ProcessConnector, root: Path) -> None:
    job = ProcessJob(job_id="gone", job_dir=str(root / "gone"))
    await connector.delete(job)
    assert not (root / "gone").exists()


# Logs ----------------------------------------------------------------------------------


async def collect_logs(connector: ProcessConnector, job: ProcessJob, **kwargs: Any) -> list[str]:
    messages: list[str] = []
    async for response in connector.get_logs(job, **kwargs):
        assert response.body is not None
        messages.extend(line.message for line in response.body.lines)
    return messages


async def test_get_logs_yields_stdout_then_stderr_lines(connector: ProcessConnector) -> None:
    code = """
        import sys
        print("out 1"); print("out 2", flush=True)
        print("err 1", file=sys.stderr)
    """
    job = await connector.create(command_template(python(code)), "")
    await wait_terminal(connector, job)
    responses = [response async for response in connector.get_logs(job)]
    assert len(responses) == 1
    assert await collect_logs(connector, job) == ["out 1", "out 2", "err 1"]


async def test_get_logs_honours_lines(connector: ProcessConnector) -> None:
    code = """
        import sys
        for i in range(100):
            print(f"out {i}")
        print("err 1", file=sys.stderr)
    """
    job = await connector.create(command_template(python(code)), "")
    await wait_terminal(connector, job)
    assert await collect_logs(connector, job, lines=3) == ["out 98", "out 99", "err 1"]
    assert len(await collect_logs(connector, job, lines=0)) == 101


async def test_get_logs_of_job_without_output_yields_an_empty_body(
    connector: ProcessConnector, root: Path
) -> None:
    (root / "quiet").mkdir(parents=True)
    job = ProcessJob(job_id="quiet", job_dir=str(root / "quiet"))
    responses = [response async for response in connector.get_logs(job)]
    assert len(responses) == 1
    assert responses[0].body is not None
    assert responses[0].body.lines == []


async def test_get_logs_of_missing_job_says_so(connector: ProcessConnector, root: Path) -> None:
    job = ProcessJob(job_id="gone", job_dir=str(root / "gone"))
    with pytest.raises(FileNotFoundError, match="job directory not found"):
        await collect_logs(connector, job)


# Trust: a forged resource_meta ------------------------------------------------------------


@pytest.fixture
def unrelated_sleep() -> Iterator[subprocess.Popen[bytes]]:
    """A process this connector did not start, leading its own process group."""
    sleep = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield sleep
    sleep.kill()
    sleep.wait()


NO_SUCH_PID = 2**22 + 1  # above Linux's largest pid_max


def plant(job_dir: Path, pid_record: str) -> Path:
    job_dir.mkdir(parents=True)
    (job_dir / "pid").write_text(pid_record)
    (job_dir / "stdout").write_text("a secret of someone else\n")
    return job_dir


async def test_a_forged_job_dir_outside_the_root_is_refused_and_its_process_survives(
    connector: ProcessConnector, tmp_path: Path, unrelated_sleep: subprocess.Popen[bytes]
) -> None:
    elsewhere = plant(tmp_path / "elsewhere" / "victim", str(unrelated_sleep.pid))
    forged = ProcessJob(job_id="victim", job_dir=str(elsewhere))
    with pytest.raises(PermanentError, match="outside"):
        await connector.delete(forged)
    with pytest.raises(PermanentError, match="outside"):
        await connector.get(forged)
    with pytest.raises(PermanentError, match="outside"):
        await collect_logs(connector, forged)
    assert unrelated_sleep.poll() is None  # never signalled
    assert not (elsewhere / "cancelled").exists()  # nothing written


@pytest.mark.parametrize("how", ["dotdot", "symlink", "other-name"])
async def test_a_job_dir_that_only_looks_like_it_is_under_the_root_is_refused(
    connector: ProcessConnector, root: Path, tmp_path: Path, how: str
) -> None:
    outside = plant(tmp_path / "outside", str(NO_SUCH_PID))
    await trio.Path(root).mkdir(parents=True)
    if how == "dotdot":
        forged = ProcessJob(job_id="outside", job_dir=str(root / ".." / "outside"))
    elif how == "symlink":
        (root / "link").symlink_to(outside)
        forged = ProcessJob(job_id="link", job_dir=str(root / "link"))
    else:
        (root / "real").mkdir()
        forged = ProcessJob(job_id="other", job_dir=str(root / "real"))
    with pytest.raises(PermanentError, match="outside"):
        await collect_logs(connector, forged)
    with pytest.raises(PermanentError, match="outside"):
        await connector.delete(forged)


@pytest.mark.parametrize("record", ["recorded start time", "pid only (older runner)"])
async def test_delete_never_signals_a_process_it_did_not_start(
    connector: ProcessConnector,
    root: Path,
    unrelated_sleep: subprocess.Popen[bytes],
    record: str,
) -> None:
    # A job directory of ours whose pid now names another process (a reused pid).
    pid = unrelated_sleep.pid
    plant(root / "reused", f"{pid} 1" if record.startswith("recorded") else str(pid))
    await connector.delete(ProcessJob(job_id="reused", job_dir=str(root / "reused")))
    assert unrelated_sleep.poll() is None
    assert (root / "reused" / "cancelled").exists()  # the job itself counts as cancelled


async def test_get_logs_refuses_a_log_file_that_is_a_symlink(
    connector: ProcessConnector, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("not yours\n")
    (root / "job").mkdir(parents=True)
    (root / "job" / "stdout").symlink_to(tmp_path / "secret")
    with pytest.raises(PermanentError, match="symlink"):
        await collect_logs(connector, ProcessJob(job_id="job", job_dir=str(root / "job")))


async def test_the_pid_file_records_the_process_start_time(connector: ProcessConnector) -> None:
    job = await connector.create(command_template(["sleep", "30"]), "")
    await wait_for_phase(connector, job, Phase.RUNNING)
    pid, started = (await read_text(Path(job.job_dir, "pid"))).split()
    stat = await read_text(Path(f"/proc/{pid}/stat"))
    assert stat.rsplit(")", 1)[1].split()[19] == started
    await connector.delete(job)
    assert (await connector.get(job)).phase == Phase.ABORTED
