"""Every start-up mistake a user can make is one line on stderr and a documented exit code,
on the real command (a separate process), and nothing changes before the ports are bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio

from supervisor.journal import Journal, upgrade
from tests.support.readonly import run_read_only
from tests.support.server import REPO_ROOT

EXIT_USAGE = 2
EXIT_JOURNAL = 3
EXIT_PORT = 4
NO_CONNECTORS = ["--entry-points", "false", "--metrics-port", "off", "--host", "127.0.0.1"]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def run(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_grpc_port_in_use_is_one_line_and_the_journal_is_not_touched(
    busy_port: int, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.db"
    url = f"sqlite:///{journal}"
    args = command("serve", *NO_CONNECTORS, "--port", str(busy_port), "--journal", url)
    result = run(args, tmp_path)
    assert result.returncode == EXIT_PORT
    assert f"127.0.0.1:{busy_port}: the port is in use" in one_line(result)
    assert not journal.exists()  # the port is bound before the journal is opened


def test_metrics_port_in_use_is_one_line(busy_port: int, tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    args = ["--entry-points", "false", "--host", "127.0.0.1", "--port", "0"]
    args += ["--journal", f"sqlite:///{journal}", "--metrics-port", str(busy_port)]
    result = run(command("serve", *args), tmp_path)
    assert result.returncode == EXIT_PORT
    assert "cannot serve metrics" in one_line(result)
    assert not journal.exists()


@pytest.mark.parametrize(
    "subcommand", [["serve", *NO_CONNECTORS, "--port", "0"], ["journal", "ls"]]
)
def test_a_journal_that_is_no_url_is_one_line(subcommand: list[str], tmp_path: Path) -> None:
    result = run(command(*subcommand, "--journal", "foo"), tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "not a journal URL: 'foo': use sqlite:///PATH or postgresql://" in one_line(result)


def test_an_unsupported_database_is_one_line(tmp_path: Path) -> None:
    url = "mysql://user:secret@localhost/db"
    result = run(command("serve", *NO_CONNECTORS, "--port", "0", "--journal", url), tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "unsupported journal database 'mysql'" in one_line(result)
    assert "secret" not in result.stderr


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/db"
    result = run(command("serve", *NO_CONNECTORS, "--port", "0", "--journal", url), tmp_path)
    assert result.returncode == EXIT_JOURNAL
    line = one_line(result)
    assert "cannot reach the database" in line
    assert "Connection refused" in line
    assert "secret" not in result.stderr


def test_a_read_only_journal_directory_says_read_only(tmp_path: Path) -> None:
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    url = f"sqlite:///{view / 'journal.db'}"
    args = command("serve", *NO_CONNECTORS, "--port", "0", "--journal", url)
    result = run_read_only(source, view, args, cwd=tmp_path, env=environment())
    assert result.returncode == EXIT_JOURNAL, result.stderr
    line = one_line(result)
    assert "read-only" in line
    assert "pick a writable --journal" in line


def test_a_sqlite_path_in_missing_directories_creates_none(tmp_path: Path) -> None:
    url = "sqlite:///no/such/dir/j.db"
    result = run(command("serve", *NO_CONNECTORS, "--port", "0", "--journal", url), tmp_path)
    assert result.returncode == EXIT_JOURNAL
    assert "no directory" in one_line(result)
    assert not (tmp_path / "no").exists()


def test_the_default_journal_directory_is_still_created(tmp_path: Path) -> None:
    async def open_default() -> None:
        async with Journal.open("sqlite:///.supervisor/journal.db"):
            pass

    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        trio.run(open_default)
    finally:
        os.chdir(cwd)
    assert (tmp_path / ".supervisor" / "journal.db").is_file()


def test_debug_log_level_adds_the_traceback(tmp_path: Path) -> None:
    args = command("journal", "ls", "--journal", "foo", "--log-level", "DEBUG")
    result = run(args, tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: not a journal URL")


def test_a_closed_pipe_ends_journal_ls_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    upgrade(url)
    many_jobs(url, 400)
    for output in ([], ["--json"]):
        process = subprocess.Popen(
            command("journal", "ls", "--journal", url, "--limit", "1000", *output),
            cwd=tmp_path,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.readline()
        process.stdout.close()  # as `| head -1` does
        assert process.wait(timeout=60) == 0
        assert process.stderr.read() == b""
        process.stderr.close()


def test_the_installed_script_names_itself_in_usage(tmp_path: Path) -> None:
    script = tmp_path / "flyte-connector-supervisor"  # what pip writes for [project.scripts]
    script.write_text("import sys\nfrom supervisor.cli import main\nsys.exit(main())\n")
    result = run([sys.executable, str(script), "--help"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: flyte-connector-supervisor ")


def many_jobs(url: str, count: int) -> None:
    from supervisor.journal import Put
    from tests.test_journal_cli import record

    async def write() -> None:
        async with Journal.open(url) as journal:
            for i in range(count):
                await journal.write(Put(record(f"{i:08x}", 60), "phase"))

    trio.run(write)


def test_a_poll_interval_for_a_task_type_nobody_serves_is_one_line(tmp_path: Path) -> None:
    flags = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
    args = ["serve", *NO_CONNECTORS, *flags, "--port", "0"]
    result = run(command(*args, "--connector-poll-interval", "ehco=5"), tmp_path)
    assert result.returncode == EXIT_USAGE
    line = one_line(result)
    assert "--connector-poll-interval: no connector serves task type 'ehco'" in line
    assert "echo" in line  # the task types it could have meant


@pytest.mark.parametrize("value", ["echo", "echo=0", "echo=-1", "=5", "echo=soon"])
def test_a_malformed_poll_interval_is_one_line(value: str, tmp_path: Path) -> None:
    result = run(command("serve", *NO_CONNECTORS, "--connector-poll-interval", value), tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "--connector-poll-interval" in result.stderr.strip().splitlines()[-1]
