"""``serve --workers N``: N replica processes on one port and one PostgreSQL journal."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from tests.support.operators import CALL_TIMEOUT, SAMPLE_ARGS, create_request, stub
from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow


def owners(url: str) -> dict[str, int]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT owner, count(*) FROM jobs GROUP BY owner"))
            return {str(owner): int(n) for owner, n in rows}
    finally:
        engine.dispose()


def replica_rows(url: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM replicas")).scalar_one())
    finally:
        engine.dispose()


def test_two_workers_share_one_port_and_the_jobs(
    tmp_path: Path, postgres_database_url: str
) -> None:
    with ServerProcess(
        [*SAMPLE_ARGS, "--workers", "2"], log_dir=tmp_path, journal=postgres_database_url
    ) as server:
        server.start()
        assert "2 workers serving" in server.stdout_text()
        assert server.stdout_text().count("replica ") >= 2  # each worker registered
        for _ in range(24):  # a connection each: the kernel spreads them over the workers
            with grpc.insecure_channel(server.address) as channel:
                stub(channel).CreateTask(create_request("echo"), timeout=CALL_TIMEOUT)
        spread = owners(postgres_database_url)
        assert sum(spread.values()) == 24
        assert len(spread) == 2, spread
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert "stopped" in server.stdout_text()
    assert replica_rows(postgres_database_url) == 0  # each worker released itself


def test_a_worker_that_dies_is_started_again(tmp_path: Path, postgres_database_url: str) -> None:
    with ServerProcess(
        [*SAMPLE_ARGS, "--workers", "2"], log_dir=tmp_path, journal=postgres_database_url
    ) as server:
        server.start()
        first = server.stdout_text().count("worker 1: serving on")
        pid_line = next(
            line
            for line in server.stdout_text().splitlines()
            if line.startswith("worker 1: replica ")
        )
        worker_pid = int(pid_line.split()[-1].split("-")[-2])
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(
            "worker 1 to serve again",
            lambda: server.stdout_text().count("worker 1: serving on") > first,
            timeout=60,
        )
        assert "worker 1 exited with status -9; starting it again" in server.stderr_text()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_workers_need_a_postgresql_journal(tmp_path: Path) -> None:
    server = ServerProcess([*SAMPLE_ARGS, "--workers", "2"], log_dir=tmp_path)
    server.spawn()
    assert server.wait(timeout=30) == 2
    assert server.stderr_text().strip() == (
        "error: --workers 2 needs a PostgreSQL journal: a SQLite journal has one owner"
        " process (use --workers 1, or a PostgreSQL --journal)"
    )
