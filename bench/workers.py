"""``serve --workers N``: one process of our server vs two, on one durable PostgreSQL journal.

For each load scenario (the issue's: lifecycle and create, 0 ms, concurrency 64) and each
worker count, a fresh database on one throwaway PostgreSQL server (fsync on) and a fresh
``serve --workers N`` (N = 1: the plain server, one process; N > 1: a supervising process
and N workers on one port through ``SO_REUSEPORT``), measured as the load runs are
(``bench.loadrun.measure``), the counts alternating from one round to the next. Server CPU
is summed over all the server's processes.

``SO_REUSEPORT`` balances connections, not requests: the load client opens one gRPC
connection per ``LOAD_WORKERS_PER_CONNECTION`` load workers (8 for concurrency 64), each on
its own subchannel pool (and at least one per worker process), so the kernel spreads them
over the workers (by a hash of the connection: with 8 connections and 2 workers the split
is seldom exactly even; the report shows each worker's share of the CPU). A worker
answers a GetTask for a job another worker owns from the journal row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.commits import durable_postgres_server
from bench.loadrun import Measurement, Scenario, aggregate, describe, measure
from bench.servers import OursServer, sample_process, tree_pids
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
    splits: dict[tuple[str, str], list[list[float]]] = {}
    with durable_postgres_server(fsync=True) as postgres:
        if postgres is None:
            log("  no PostgreSQL server binaries: serve --workers skipped")
            return None
        for n, scenario in enumerate(scenarios):
            # At least one connection per worker process, else one of them gets nothing.
            channels = max(*counts, scenario.concurrency // LOAD_WORKERS_PER_CONNECTION)
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
                        cpu: dict[str, dict[int, float]] = {}

                        def on_edge(
                            edge: str,
                            server: OursServer = server,
                            cpu: dict[str, dict[int, float]] = cpu,
                        ) -> None:
                            cpu[edge] = _worker_cpu(server.pid)

                        m = measure(
                            server,
                            scenario,
                            round_=round_,
                            duration=duration,
                            warmup=warmup,
                            channels=channels,
                            on_edge=on_edge,
                        )
                    measurements.append(m)
                    used = [
                        cpu["end"][pid] - cpu["start"][pid]
                        for pid in cpu.get("end", {})
                        if pid in cpu.get("start", {})
                    ]
                    # Busiest first: the rounds' workers are pooled by rank, not by pid.
                    splits.setdefault((scenario.key, label(workers)), []).append(
                        sorted(used, reverse=True)
                    )
                    split = _split(used)
                    log(describe(m) + (f"; CPU split between workers {split}" if split else ""))
    rows = aggregate(measurements)
    for (key, name), rounds_used in splits.items():
        totals = [sum(column) for column in zip(*rounds_used, strict=False)]
        rows[key][name]["worker_cpu_split"] = _split(totals)
    return rows


def _worker_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each worker process of ``serve --workers N`` (none for N = 1)."""
    found = {}
    for worker in tree_pids(pid)[1:]:
        try:
            found[worker] = sample_process(worker).cpu_seconds
        except OSError:
            continue
    return found


def _split(used: list[float]) -> str:
    """The workers' shares of their CPU, e.g. "55% / 45%" ("": one process)."""
    total = sum(used)
    if len(used) < 2 or not total:
        return ""
    return " / ".join(f"{100 * u / total:.0f}%" for u in sorted(used, reverse=True))
