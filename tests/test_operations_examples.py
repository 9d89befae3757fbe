"""Every shell example in docs/operations.md runs, as written, against a real journal.

The examples' placeholders are filled in (``URL``, ``/data/journal.db``, ``/backup``, the
job id ``3f2a9c``, the resource_meta ``...``); the journal holds a job like the ones the
docs talk about (a BigQuery job, live for hours). ``journal web`` is started on a free
port and asked for its first page.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import trio

from supervisor.journal import CreateState, DeleteState, JobRecord, Journal, Put
from tests.support.server import REPO_ROOT

pytestmark = pytest.mark.slow

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
JOB_ID = "3f2a9c" + "0" * 26
META = "bq-3f2a9c"
#: The commands run in a scratch directory, on this checkout's code.
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def shell_examples() -> list[str]:
    """The commands in the doc's indented code blocks (lines that start with ``python``)."""
    commands = []
    for line in OPERATIONS.read_text().splitlines():
        if line.startswith("    python "):
            commands.append(line.strip())
    return commands


def populate(url: str) -> None:
    now = time.time()
    job = JobRecord(
        job_id=JOB_ID,
        task_type="bigquery_query_job_task",
        task_type_version=0,
        connector="Bigquery Connector",
        attempt=0,
        create_state=CreateState.CREATED,
        delete_state=DeleteState.NONE,
        phase=2,  # RUNNING
        created_at=now - 3 * 3600,
        updated_at=now - 60,
        resource_meta=json.dumps({"job_id": META}, separators=(",", ":")).encode(),
        message="query running",
    )

    async def write() -> None:
        async with Journal.open(url) as journal:
            await journal.write(Put(job, "created"))

    trio.run(write)


def filled_in(command: str, data: Path, backup: Path) -> list[str]:
    url = f"sqlite:///{data / 'journal.db'}"
    text = command.split("  #")[0].strip()  # the comment after the command
    text = text.replace("/data/journal.db", str(data / "journal.db"))
    text = text.replace("/backup/journal.db", str(backup / "journal.db"))
    text = text.replace("3f2a9c", JOB_ID[:6]).replace('"..."', f'"{META}"')
    argv = shlex.split(text)
    argv[0] = sys.executable
    if "--journal" in argv:
        argv[argv.index("--journal") + 1] = url
    elif argv[1:4] == ["-m", "supervisor", "journal"]:
        argv += ["--journal", url]
    if "--port" in argv:
        argv[argv.index("--port") + 1] = "0"
    return argv


def test_the_doc_has_the_examples_this_test_expects() -> None:
    commands = shell_examples()
    assert len(commands) >= 10
    assert any("journal web" in c for c in commands)
    assert any("sqlite3.connect" in c for c in commands)


def test_every_shell_example_in_the_operations_guide_runs(tmp_path: Path) -> None:
    data, backup = tmp_path / "data", tmp_path / "backup"
    data.mkdir()
    backup.mkdir()
    populate(f"sqlite:///{data / 'journal.db'}")
    outputs = {}
    for command in shell_examples():
        argv = filled_in(command, data, backup)
        if "web" in argv:
            outputs[command] = run_web(argv)
            continue
        result = subprocess.run(
            argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, check=False
        )
        assert (result.returncode, result.stderr) == (0, ""), command
        outputs[command] = result.stdout
    found = [c for c in outputs if "--connector 'Bigquery Connector'" in c]
    assert found
    assert JOB_ID in outputs[found[0]] or JOB_ID[:8] in outputs[found[0]]
    assert JOB_ID in " ".join(v for c, v in outputs.items() if "--older-than 2h" in c)
    shows = [v for c, v in outputs.items() if "journal show" in c]
    assert len(shows) == 2
    assert all("query running" in shown for shown in shows)
    assert (backup / "journal.db").is_file()


def run_web(argv: list[str]) -> str:
    process = subprocess.Popen(
        argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"(http://\S+)", line)
        assert found, line
        with urllib.request.urlopen(found.group(1), timeout=10) as answer:
            return str(answer.read().decode())
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()
