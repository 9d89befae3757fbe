"""``python -m supervisor run``: reading templates and inputs, and real runs of the process
connector in a child process (to success, and interrupted by SIGINT)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flyteidl2.core import tasks_pb2
from google.protobuf import json_format

from connectors import BlobRef, StructuredDatasetRef
from connectors.process._jobdir import group_alive
from flyteproto.flyteidl2.core import (
    BlobType,
    BlobTypeBlobDimensionality,
    LiteralType,
    SimpleType,
    StructuredDatasetType,
    TaskTemplate,
    TypedInterface,
    Variable,
    VariableEntry,
    VariableMap,
)
from flyteproto.google.protobuf import Struct
from supervisor.cli import InvalidRunInput, read_inputs, read_template
from tests.support.server import REPO_ROOT, wait_for

#: Deadline for a child run to reach a state; generous, only a hung run trips it.
RUN_TIMEOUT = 30.0


def process_template(*command: str) -> TaskTemplate:
    return TaskTemplate(type="process", custom=Struct.from_dict({"command": list(command)}))


# -- reading the template and the inputs -------------------------------------------------


def test_template_file_may_be_protobuf_json(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text('{"type": "process", "taskTypeVersion": 2, "custom": {"command": ["true"]}}')
    template = read_template(path)
    assert (template.type, template.task_type_version) == ("process", 2)
    assert template.custom is not None
    assert template.custom.to_dict() == {"command": ["true"]}


def test_template_file_may_be_binary_protobuf(tmp_path: Path) -> None:
    path = tmp_path / "task.pb"
    path.write_bytes(bytes(process_template("true")))
    assert read_template(path) == process_template("true")


def test_template_json_written_by_flytes_own_tools_reads_back(tmp_path: Path) -> None:
    official = tasks_pb2.TaskTemplate.FromString(bytes(process_template("echo", "hi")))
    path = tmp_path / "task.json"
    path.write_text(json_format.MessageToJson(official))
    assert read_template(path) == process_template("echo", "hi")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"type": "process", "bogus": 1}', "bogus"),
        ('{"custom": {}}', "no task type"),
        ("{not json", "protobuf JSON"),
    ],
)
def test_unreadable_template_says_why(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "task.json"
    path.write_text(content)
    with pytest.raises(InvalidRunInput, match=match):
        read_template(path)


def test_inputs_are_adapted_to_the_declared_types(tmp_path: Path) -> None:
    def var(literal_type: LiteralType) -> Variable:
        return Variable(type=literal_type)

    declared = {
        "x": var(LiteralType(simple=SimpleType.FLOAT)),
        "when": var(LiteralType(simple=SimpleType.DATETIME)),
        "wait": var(LiteralType(simple=SimpleType.DURATION)),
        "table": var(LiteralType(structured_dataset_type=StructuredDatasetType(format="pq"))),
        "dir": var(LiteralType(blob=BlobType(dimensionality=BlobTypeBlobDimensionality.MULTIPART))),
    }
    template = TaskTemplate(
        type="t",
        interface=TypedInterface(
            inputs=VariableMap(
                variables=[VariableEntry(key=k, value=v) for k, v in declared.items()]
            )
        ),
    )
    scalars = {"x": 1, "when": "2024-05-01T12:00:00Z", "wait": 90, "table": "bq://p:d.t"}
    text = json.dumps({**scalars, "dir": "s3://b/d", "other": [1, 2]})
    path = tmp_path / "inputs.json"
    path.write_text(text)
    for given in (text, str(path)):
        assert read_inputs(given, template) == {
            "x": 1.0,
            "when": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
            "wait": dt.timedelta(seconds=90),
            "table": StructuredDatasetRef("bq://p:d.t", "pq"),
            "dir": BlobRef("s3://b/d", multipart=True),
            "other": [1, 2],
        }


@pytest.mark.parametrize("given", ["[1, 2]", "nope"])
def test_inputs_must_be_a_json_object(given: str) -> None:
    with pytest.raises(InvalidRunInput, match="--inputs"):
        read_inputs(given, TaskTemplate(type="t"))


# -- real runs -------------------------------------------------------------------------------


def start_run(tmp_path: Path, template: TaskTemplate, *extra: str) -> subprocess.Popen[bytes]:
    (tmp_path / "task.json").write_text(template.to_json())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    env.update({"PYTHONUNBUFFERED": "1", "SUPERVISOR_PROCESS_ROOT": str(tmp_path / "jobs")})
    command = [sys.executable, "-m", "supervisor", "run", str(tmp_path / "task.json")]
    command += ["--entry-points", "false", "--poll-interval", "0.05", *extra]
    command += ["--modules", "connectors.process"]
    with (tmp_path / "stdout").open("wb") as stdout, (tmp_path / "stderr").open("wb") as stderr:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )


def finish(process: subprocess.Popen[bytes], tmp_path: Path) -> tuple[int, str]:
    try:
        code = process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, (tmp_path / "stdout").read_text()


@pytest.mark.slow
def test_run_command_runs_a_process_task_to_success(tmp_path: Path) -> None:
    script = (
        "import json, os; n = json.load(open(os.environ['FLYTE_INPUTS_FILE']))['n']; "
        "json.dump({'double': 2 * n}, open(os.environ['FLYTE_OUTPUTS_FILE'], 'w'))"
    )
    template = process_template(sys.executable, "-c", script)
    process = start_run(tmp_path, template, "--inputs", '{"n": 21}')
    code, stdout = finish(process, tmp_path)
    assert code == 0, (tmp_path / "stderr").read_text()
    lines = stdout.splitlines()
    assert lines[0].startswith("submitted Local process connector job ")
    assert any(line.startswith("log: stdout: file://") for line in lines)
    assert any(line.startswith("SUCCEEDED ") for line in lines)
    assert lines[-1] == 'outputs: {"double": 42}'


@pytest.mark.slow
def test_run_command_exits_1_when_the_job_fails(tmp_path: Path) -> None:
    process = start_run(tmp_path, process_template(sys.executable, "-c", "raise SystemExit(3)"))
    code, stdout = finish(process, tmp_path)
    assert code == 1
    assert "FAILED" in stdout
    assert "exited with code 3" in stdout


@pytest.mark.slow
def test_sigint_during_a_run_cancels_the_job_before_exiting(tmp_path: Path) -> None:
    template = process_template(sys.executable, "-c", "import time; time.sleep(120)")
    process = start_run(tmp_path, template)
    try:
        stdout = tmp_path / "stdout"
        wait_for("the job to run", lambda: "\nRUNNING" in stdout.read_text(), timeout=RUN_TIMEOUT)
        submitted = stdout.read_text().splitlines()[0]
        job_dir = Path(json.loads(submitted.split(" job ", 1)[1])["job_dir"])
        pgid = int((job_dir / "pid").read_text().split()[0])
        assert group_alive(pgid)
        process.send_signal(signal.SIGINT)
    finally:
        code, text = finish(process, tmp_path)
    assert code == 130, (tmp_path / "stderr").read_text()
    assert text.splitlines()[-1] == "cancelled the external job"
    assert (job_dir / "cancelled").exists()
    deadline = time.monotonic() + RUN_TIMEOUT
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pgid)
