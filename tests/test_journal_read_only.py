"""Reading a journal never needs write access: ``journal ls/show/stats`` on a read-only copy
(a backup, a read-only volume), and the JSON they print has snake_case keys.

The copy is made read-only honestly (``tests.support.readonly``): as root, a read-only bind
mount in a mount namespace of its own, since root writes through any mode bits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.journal import Journal, Put
from tests.support.readonly import run_read_only
from tests.support.server import REPO_ROOT
from tests.test_journal_cli import populate, population, record

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def supervisor_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def read(source: Path, tmp_path: Path, *args: str) -> Any:
    """``journal ARGS --json`` on a read-only view of ``source``; the parsed output."""
    view = tmp_path / "view"
    url = f"sqlite:///{view / 'journal.db'}"
    command = supervisor_command("journal", *args, "--journal", url, "--json")
    result = run_read_only(source, view, command, cwd=tmp_path, env=environment())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


@pytest.fixture
def stopped_journal(tmp_path: Path) -> Path:
    """The journal of a server that stopped: no -wal or -shm beside it."""
    source = tmp_path / "source"
    source.mkdir()
    populate(f"sqlite:///{source / 'journal.db'}")
    assert not [p.name for p in source.iterdir() if p.name.endswith(("-wal", "-shm"))]
    return source


def test_ls_show_and_stats_read_a_read_only_journal(stopped_journal: Path, tmp_path: Path) -> None:
    jobs = read(stopped_journal, tmp_path, "ls")
    assert {job["job_id"] for job in jobs} == {put.record.job_id for put in population()}
    shown = read(stopped_journal, tmp_path, "show", "aaaa1111")
    assert [event["kind"] for event in shown["events"]] == ["create_intent", "created"]
    assert read(stopped_journal, tmp_path, "stats")["jobs"] == len(jobs)
    assert not [p for p in stopped_journal.iterdir() if p.name.endswith(("-wal", "-shm"))]


def test_a_copy_taken_while_the_server_wrote_reads_its_wal_too(tmp_path: Path) -> None:
    """A copy of journal.db with its -wal and -shm (a volume snapshot of a running server):
    the writes still in the WAL are read, not skipped."""
    live, source = tmp_path / "live", tmp_path / "source"
    live.mkdir()
    url = f"sqlite:///{live / 'journal.db'}"

    async def snapshot_while_open() -> None:
        async with Journal.open(url) as journal:
            for put in population():
                await journal.write(put)
            await journal.write(Put(record("ffff6666", 5), "phase"))
            assert (live / "journal.db-wal").stat().st_size > 0
            shutil.copytree(live, source)

    trio.run(snapshot_while_open)
    ids = {job["job_id"] for job in read(source, tmp_path, "ls")}
    assert "ffff6666" in ids
    assert ids == {put.record.job_id for put in population()} | {"ffff6666"}


def test_json_keys_are_snake_case(stopped_journal: Path, tmp_path: Path) -> None:
    outputs = [
        read(stopped_journal, tmp_path, "ls"),
        read(stopped_journal, tmp_path, "show", "aaaa1111"),
        read(stopped_journal, tmp_path, "stats"),
    ]
    bad = [key for output in outputs for key in keys_of(output) if not SNAKE.match(key)]
    assert bad == []


def keys_of(value: Any) -> list[str]:
    """Every key in ``value``, except inside ``custom_info`` (the connector's own data)."""
    if isinstance(value, list):
        return [key for item in value for key in keys_of(item)]
    if not isinstance(value, dict):
        return []
    found = []
    for key, item in value.items():
        found.append(key)
        if key != "custom_info":
            found += keys_of(item)
    return found
