"""One server per SQLite journal: a second is refused in one line, or waits as a standby."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

from supervisor.journal import Journal, JournalBusy
from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow


async def test_second_journal_on_one_file_is_refused_naming_the_owner(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    async with Journal.open(url):
        with pytest.raises(JournalBusy) as refused:
            async with Journal.open(url):
                pytest.fail("a second journal on the same file opened")
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "--standby" in message
    async with Journal.open(url):  # closing the first released it
        pass


async def test_standby_journal_opens_once_the_owner_closes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    waited: list[int | None] = []
    opened = trio.Event()

    async def standby() -> None:
        async with Journal.open(url, standby=lambda owner: waited.append(owner.pid)):
            opened.set()

    async with trio.open_nursery() as nursery:
        async with Journal.open(url):
            nursery.start_soon(standby)
            with trio.move_on_after(2):  # the standby must not get in while we own it
                await opened.wait()
            assert not opened.is_set()
            assert waited == [os.getpid()]
        with trio.fail_after(30):
            await opened.wait()


def test_second_server_on_one_sqlite_journal_exits_with_one_line(tmp_path: Path) -> None:
    journal = f"sqlite:///{tmp_path / 'j.db'}"
    with (
        ServerProcess(log_dir=tmp_path / "first", journal=journal).start() as first,
        ServerProcess(log_dir=tmp_path / "second", journal=journal) as second,
    ):
        second.spawn()
        assert second.wait(timeout=60) == 3
        stderr = second.stderr_text()
        assert "Traceback" not in stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, stderr
        assert f"in use by pid {first.pid}" in errors[0]
        assert "resumed" not in second.stdout_text()  # nothing was resumed, no port bound
        assert "serving on" not in second.stdout_text()
        assert first.running


def test_standby_server_takes_over_when_the_owner_is_killed(tmp_path: Path) -> None:
    journal = f"sqlite:///{tmp_path / 'j.db'}"
    with (
        ServerProcess(log_dir=tmp_path / "first", journal=journal).start() as first,
        ServerProcess(
            ["--standby", "true"], log_dir=tmp_path / "standby", journal=journal
        ) as standby,
    ):
        standby.spawn()
        wait_for(
            "the standby to say it waits",
            lambda: f"in use by pid {first.pid}" in standby.stdout_text(),
            timeout=60,
        )
        assert "serving on" not in standby.stdout_text()
        first.kill()
        standby.wait_serving(timeout=60)
        assert standby.running
