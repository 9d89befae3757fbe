"""Journal throughput: committed transitions per second through ``supervisor.journal.Journal``.

``writers`` Trio tasks each own one job and write one phase transition (a ``Put``: the
job's whole row plus one event, as an actor writes it) after another, each waiting for its
commit, as actors do. Group commit batches whatever is queued; we count the puts committed
during the measured window. SQLite runs on a file with the journal's own settings (WAL,
``synchronous=FULL``); PostgreSQL on a throwaway server started like the tests' one
(``tests.support.postgres``), but with ``fsync`` on, since durability is the point.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from supervisor.journal import CreateState, DeleteState, JobRecord, Journal, Put
from tests.support.postgres import PostgresServer, find_bin_dir, fresh_database

__all__ = ["CommitResult", "durable_postgres", "durable_postgres_server", "measure_commits"]

#: Phases a job goes through (flyteidl2 TaskExecution.Phase values): QUEUED, RUNNING.
_PHASES = (1, 2)


@dataclass(frozen=True)
class CommitResult:
    backend: str
    writers: int
    window: float
    puts: int
    batches: int
    max_batch: int

    @property
    def rate(self) -> float:
        return self.puts / self.window if self.window else 0.0

    @property
    def mean_batch(self) -> float:
        return self.puts / self.batches if self.batches else 0.0


def _record(job_id: str) -> JobRecord:
    now = time.time()
    return JobRecord(
        job_id=job_id,
        task_type="bench",
        task_type_version=0,
        connector="Bench connector",
        attempt=0,
        create_state=CreateState.CREATED,
        delete_state=DeleteState.NONE,
        phase=_PHASES[0],
        created_at=now,
        updated_at=now,
        resource_meta=b'{"duration":3600.0,"job_id":"%s","started":1767225600.0}' % job_id.encode(),
        message="running",
        log_links=f'[{{"name": "bench", "uri": "https://bench.invalid/{job_id}"}}]',
        create_request=bytes(200),
    )


async def _measure(
    url: str, backend: str, writers: int, window: float, warmup: float
) -> CommitResult:
    async with Journal.open(url) as journal, trio.open_nursery() as nursery:

        async def writer(n: int) -> None:
            record = _record(f"{backend}-{writers}-{n:06d}")
            turn = 0
            while True:
                turn += 1
                record = dataclasses.replace(
                    record, phase=_PHASES[turn % 2], updated_at=time.time()
                )
                await journal.write(Put(record, "phase", f'{{"phase": {record.phase}}}'))

        for n in range(writers):
            nursery.start_soon(writer, n)
        await trio.sleep(warmup)
        before, started = journal.statistics(), time.perf_counter()
        await trio.sleep(window)
        after, ended = journal.statistics(), time.perf_counter()
        nursery.cancel_scope.cancel()
    return CommitResult(
        backend=backend,
        writers=writers,
        window=ended - started,
        puts=after.puts_committed - before.puts_committed,
        batches=after.batches_committed - before.batches_committed,
        max_batch=after.max_batch_size,
    )


def measure_commits(
    url: str, backend: str, writers: int, *, window: float, warmup: float = 1.0
) -> CommitResult:
    """Committed puts per second with ``writers`` concurrent writers on the journal at ``url``."""
    return trio.run(_measure, url, backend, writers, window, warmup)


class _DurablePostgres(PostgresServer):
    """The tests' throwaway server, started with ``fsync`` on (the tests turn it off)."""

    def start(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        data = self.root / "data"
        cluster = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]
        self._run("initdb", "-D", str(data), *cluster)
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port}"
        self._run(
            "pg_ctl", "-D", str(data), "-l", str(self.root / "log"), "-o", options, "-w", "start"
        )
        self._wait_accepting()


@contextmanager
def durable_postgres_server(*, fsync: bool = True) -> Iterator[PostgresServer | None]:
    """A throwaway PostgreSQL server (None: no server binaries here); ``fresh_database``
    on its port makes databases."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        yield None
        return
    server = _DurablePostgres(bin_dir) if fsync else PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def durable_postgres(*, fsync: bool = True) -> Iterator[str | None]:
    """A fresh database on a throwaway PostgreSQL server; its URL (None: no server here)."""
    with durable_postgres_server(fsync=fsync) as server:
        if server is None:
            yield None
            return
        with fresh_database(server.port) as url:
            yield url


def sqlite_url(directory: Path, name: str) -> str:
    return f"sqlite:///{directory / name}"
