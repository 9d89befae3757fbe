"""``serve --workers N``: one process of our server vs two, on one durable PostgreSQL journal.

For each load scenario (the issue's: lifecycle and create, 0 ms, concurrency 64) and each
worker count, a fresh database on one throwaway PostgreSQL server (fsync on) and a fresh
``serve --workers N`` (N = 1: the plain server, one process; N > 1: a supervising process
and N workers on one port through ``SO_REUSEPORT``), measured as the load runs are
(``bench.loadrun.measure``), the counts alternating from one round to the next. Server CPU
is summed over all the server's processes.

``SO_REUSEPORT`` balances connections, not requests: the load client opens one gRPC
connection per ``LOAD_WORKERS_PER_CONNECTION`` load workers (8 for concurrency 64), each on
its own subchannel pool, so the kernel spreads them over the workers (by a hash of the
connection: with 8 connections and 2 workers the split is seldom exactly even). A worker
answers a GetTask for a job another worker owns from the journal row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.commits import durable_postgres_server
from bench.loadrun import Measurement, Scenario, aggregate, describe, measure
from bench.servers import OursServer
from tests.support.postgres import fresh_database

__all__ = ["LOAD_WORKERS_PER_CONNECTION", "label", "run_workers"]

LOAD_WORKERS_PER_CONNECTION = 8


def label(workers: int) -> str:
    return f"{workers} worker" + ("s" if workers > 1 else "")


def run_workers(
    scenarios: Sequence[Scenario],
    *,
    counts: Sequence[int],
    rounds: int,
    duration: float,
    warmup: float,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict[str, Any]]] | None:
    """Every scenario for every worker count; ``aggregate``'s rows keyed by ``label(N)``.

    None without PostgreSQL server binaries.
    """
    measurements: list[Measurement] = []
    with durable_postgres_server(fsync=True) as postgres:
        if postgres is None:
            log("  no PostgreSQL server binaries: serve --workers skipped")
            return None
        for n, scenario in enumerate(scenarios):
            channels = max(1, scenario.concurrency // LOAD_WORKERS_PER_CONNECTION)
            for round_ in range(rounds):
                order = list(counts) if (round_ + n) % 2 == 0 else list(reversed(counts))
                for workers in order:
                    where = workdir / f"{scenario.key.replace(' ', '-')}-{round_}-w{workers}"
                    where.mkdir(parents=True)
                    with fresh_database(postgres.port) as url:
                        server = OursServer(
                            where, latency_ms=scenario.latency_ms, journal=url, workers=workers
                        )
                        server.name = label(workers)
                        m = measure(
                            server,
                            scenario,
                            round_=round_,
                            duration=duration,
                            warmup=warmup,
                            channels=channels,
                        )
                    measurements.append(m)
                    log(describe(m))
    return aggregate(measurements)
