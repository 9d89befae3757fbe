"""verify-recovery against real servers: ours on SQLite and PostgreSQL, and a broken double.

Each test runs ``python -m supervisor verify-recovery`` as a user would, on a short fixed
schedule (``--seed``), and reads its ``--json`` report. ``--delete-gap 0``: kills may land
between an external cancel and its journal write (a resumed cancel asks the service first).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresServer, fresh_database
from tests.support.server import REPO_ROOT, wait_for

pytestmark = pytest.mark.slow

#: A run must end well within this (the schedule takes ~10 s plus the restarts).
RUN_TIMEOUT = 240.0

SHORT = [
    "--jobs", "200", "--faults", "5", "--kinds", "kill", "--duration", "8",
    "--job-seconds", "3", "--poll-interval", "0.5", "--delete-share", "0.1",
    "--delete-gap", "0", "--seed", "15", "--json",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def verify(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run verify-recovery; its exit code, JSON report and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "verify-recovery", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.stdout.startswith("{"), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def assert_passed(code: int, report: dict[str, Any], stderr: str) -> None:
    assert report["violations"] == [], (report, stderr)
    assert (code, report["verdict"]) == (0, "PASS")
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["created"] == report["jobs"]
    assert len(report["faults"]) == 5
    assert all(f["all_polled"] is not None for f in report["faults"] if f["live"])


def test_five_kills_on_sqlite_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    journal = f"sqlite:///{tmp_path}/j.db"
    code, report, stderr = verify(
        "--serve", "--journal", journal, "--record-dir", str(tmp_path), *SHORT
    )
    assert_passed(code, report, stderr)
    assert report["external"]["external_jobs"] == {"1": 200}
    assert report["external"]["cancels"].keys() <= {"0", "1"}


def test_kills_on_postgresql_lose_and_duplicate_nothing(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with fresh_database(postgres_server.port) as url:
        code, report, stderr = verify(
            "--serve", "--journal", url, "--record-dir", str(tmp_path), *SHORT
        )
    assert_passed(code, report, stderr)


@pytest.fixture
def journalless(tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    """A broken server (no journal) on a free port: (address, kill cmd, start cmd, records)."""
    records, pid_file, log = tmp_path / "records", tmp_path / "pid", tmp_path / "server.log"
    records.mkdir()
    port = free_port()
    start = (
        f"cd {shlex.quote(str(REPO_ROOT))} && SUPERVISOR_VERIFY_DIR={shlex.quote(str(records))} "
        f"setsid {shlex.quote(sys.executable)} -m tests.support.journalless_server {port} "
        f">>{shlex.quote(str(log))} 2>&1 & echo $! > {shlex.quote(str(pid_file))}"
    )
    kill = f"kill -9 $(cat {shlex.quote(str(pid_file))})"
    subprocess.run(start, shell=True, check=True)
    wait_for(
        "the broken server", lambda: log.exists() and "serving on" in log.read_text(), timeout=60
    )
    try:
        yield f"127.0.0.1:{port}", kill, start, records
    finally:
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_server_without_a_journal_fails_with_the_violation_named(
    journalless: tuple[str, str, str, Path],
) -> None:
    address, kill, start, records = journalless
    code, report, _ = verify(
        "--address", address, "--kill-cmd", kill, "--start-cmd", start,
        "--record-dir", str(records), "--jobs", "100", "--faults", "3", "--duration", "10",
        "--job-seconds", "10", "--delete-share", "0.8", "--cancel-seconds", "2",
        "--poll-interval", "0.5", "--seed", "3", "--json",
    )  # fmt: skip
    assert (code, report["verdict"]) == (1, "FAIL")
    assert report["cancels_lost"] > 0, report
    assert any(v.startswith("cancel lost: ") for v in report["violations"])


def test_postgresql_outages_lose_and_duplicate_nothing(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """No DeleteTasks here: an outage between an external cancel and its journal write
    cancels twice on main today (the actor's journal-fault work, issue 11, fixes it)."""
    data, pg_ctl = postgres_server.root / "data", postgres_server.bin_dir / "pg_ctl"
    as_postgres = "runuser -u postgres -- " if os.geteuid() == 0 else ""
    options = f"-k {postgres_server.root} -h 127.0.0.1 -p {postgres_server.port} -F"
    stop = f"{as_postgres}{pg_ctl} -D {data} -m fast -w stop"
    start = f"{as_postgres}{pg_ctl} -D {data} -l {postgres_server.root}/log -o '{options}' -w start"
    with fresh_database(postgres_server.port) as url:
        try:
            code, report, stderr = verify(
                "--serve", "--journal", url, "--record-dir", str(tmp_path),
                "--jobs", "100", "--faults", "2", "--kinds", "db", "--outage", "2",
                "--db-stop-cmd", stop, "--db-start-cmd", start, "--duration", "10",
                "--job-seconds", "4", "--poll-interval", "0.5", "--delete-share", "0",
                "--seed", "5", "--json",
            )  # fmt: skip
        finally:
            if not (data / "postmaster.pid").exists():  # the session's server: bring it back
                subprocess.run(start, shell=True, check=True, timeout=60)
    assert report["violations"] == [], (report, stderr)
    assert (code, report["lost"], report["duplicated"]) == (0, 0, 0)
    assert [fault["kind"] for fault in report["faults"]] == ["db", "db"]
