"""Replica runs: ``python -m bench replicas`` — 1, 2 and 4 replicas on one PostgreSQL.

For each replica count N, on a fresh database of a durable (fsync on) PostgreSQL server:

1. Start N replicas (``serve``, default lease: heartbeat 2 s, dead after 10 s) with the
   replica-test connector (``tests.support.replica_connectors``: every external call is one
   line in a shared log, with the caller's pid and ``time.monotonic()``), polling every
   ``POLL_INTERVAL`` seconds as Propeller would.
2. Create ``victim_jobs`` jobs on replica 1 and ``peer_jobs`` on each other one (the
   receiver owns them): the set carries them all; wait until each has been polled once.
3. For ``window`` seconds, send GetTasks as fast as ``CONCURRENCY`` asyncio workers can
   through a round-robin client (one grpcio channel per replica, each call to the next
   one: a non-owner answers from the journal row), and count the polls in the call log.
4. kill -9 replica 1 with its ``victim_jobs`` jobs. Its row is first marked as on
   another node, so the survivors judge it by its heartbeat alone, as peers in other pods
   do (on one host they would see its pid gone, sooner). The takeover time of a job is
   from the kill to its first poll by a survivor; with N = 1 there is no survivor: a new
   replica is started at once, and the time is its resume.

Prints a Markdown table and writes it with the raw figures (JSON) under
``bench/results/<stamp>-replicas/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from bench.commits import durable_postgres
from bench.load import CALL_TIMEOUT, percentile
from bench.run import machine, source
from bench.servers import sample_process
from tests.support.replica_connectors import TASK_TYPE
from tests.support.replicas import Job, Lease, ReplicaSet, RoundRobinClient, wait_until

__all__ = ["ReplicaResult", "main", "run_replicas"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
POLL_INTERVAL = 30.0
LEASE = Lease(heartbeat_interval=2.0, dead_after=10.0, poll_interval=POLL_INTERVAL)
CONCURRENCY = 64
CREATE_THREADS = 32
#: How long every job may take to be polled for the first time, or after the kill.
POLLED_TIMEOUT = 600.0


@dataclass
class ReplicaResult:
    replicas: int
    jobs: int  # live jobs carried by the set
    create_seconds: float = 0.0
    window: float = 0.0
    polls: int = 0
    gets: int = 0
    get_errors: int = 0
    get_latencies_ms: list[float] = field(default_factory=list, repr=False)
    cpu_percent: float = 0.0  # all replicas together, in the window (100 = one core)
    victim_jobs: int = 0
    takeover_p50: float = 0.0
    takeover_max: float = 0.0
    takeover_kind: str = "survivors"

    @property
    def create_rate(self) -> float:
        return self.jobs / self.create_seconds if self.create_seconds else 0.0

    @property
    def poll_rate(self) -> float:
        return self.polls / self.window if self.window else 0.0

    @property
    def get_rate(self) -> float:
        return self.gets / self.window if self.window else 0.0

    def summary(self) -> dict[str, Any]:
        found = asdict(self)
        del found["get_latencies_ms"]
        found["get_p50_ms"] = percentile(self.get_latencies_ms, 0.5)
        found["get_p99_ms"] = percentile(self.get_latencies_ms, 0.99)
        found["create_rate"] = self.create_rate
        found["poll_rate"] = self.poll_rate
        found["get_rate"] = self.get_rate
        return found


def _log(message: str) -> None:
    print(message, flush=True)


async def _get_load(
    addresses: Sequence[str], jobs: Sequence[Job], window: float, result: ReplicaResult
) -> None:
    """``CONCURRENCY`` workers, each call on the next replica in turn, for ``window`` s."""
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    stubs = [service_pb2_grpc.AsyncConnectorServiceStub(c) for c in channels]
    category = pb.TaskCategory(name=TASK_TYPE, version=0)
    turn = 0
    deadline = time.monotonic() + window

    async def worker(index: int) -> None:
        nonlocal turn
        job = index
        while time.monotonic() < deadline:
            stub = stubs[turn % len(stubs)]
            turn += 1
            job = (job + 7919) % len(jobs)
            request = pb.GetTaskRequest(
                task_category=category, resource_meta=jobs[job].resource_meta
            )
            started = time.perf_counter()
            try:
                await stub.GetTask(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError:
                result.get_errors += 1
                continue
            result.get_latencies_ms.append((time.perf_counter() - started) * 1000)
            result.gets += 1

    try:
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    finally:
        for channel in channels:
            await channel.close()


def run_replicas(
    count: int, victim_jobs: int, peer_jobs: int, window: float, workdir: Path, url: str
) -> ReplicaResult:
    """One run with ``count`` replicas on the database at ``url``."""
    result = ReplicaResult(count, victim_jobs + (count - 1) * peer_jobs)
    with ReplicaSet(url, workdir, LEASE) as replicas, RoundRobinClient(replicas) as client:
        started = replicas.start(count)
        _log(f"  {count} replica(s) serving; creating {result.jobs:,} jobs")
        began = time.monotonic()
        jobs: list[Job] = []
        for index, replica in enumerate(started):
            number = peer_jobs if index else victim_jobs
            jobs += client.create_jobs(number, on=replica, threads=CREATE_THREADS)
        result.create_seconds = time.monotonic() - began
        log = replicas.calls()
        ids = [job.external_id for job in jobs]
        wait_until(
            "every job polled", lambda: log.refresh().polled(ids, 0.0), timeout=POLLED_TIMEOUT
        )
        _log(f"  created at {result.create_rate:,.0f}/s; every job polled; measuring {window:g}s")

        before = [sample_process(r.pid) for r in started]
        window_start = time.monotonic()
        addresses = [r.address for r in started]
        asyncio.run(_get_load(addresses, jobs, window, result))
        window_end = time.monotonic()
        after = [sample_process(r.pid) for r in started]
        result.window = window_end - window_start
        result.polls = sum(1 for _ in log.refresh().polls_between(window_start, window_end))
        cpu = sum(a.cpu_seconds - b.cpu_seconds for a, b in zip(after, before, strict=True))
        result.cpu_percent = 100 * cpu / result.window
        _log(
            f"  {result.poll_rate:,.0f} polls/s, {result.get_rate:,.0f} GetTask/s"
            f" ({result.get_errors} errors), replicas' CPU {result.cpu_percent:.0f}%"
        )

        victim = started[0]
        last = log.last_poller()
        orphans = [job for job in ids if last.get(job) == victim.who]
        result.victim_jobs = len(orphans)
        if count > 1:
            replicas.move_to_another_host(victim)
        killed_at = time.monotonic()
        victim.kill()
        if count == 1:
            result.takeover_kind = "restart"
            replicas.spawn()
        others = {r.who for r in replicas.live}
        wait_until(
            f"{len(orphans):,} orphans polled again",
            lambda: log.refresh().polled(orphans, killed_at, others),
            timeout=POLLED_TIMEOUT,
        )
        first = log.first_poll(killed_at, others)
        times = sorted(first[job].at - killed_at for job in orphans)
        result.takeover_p50 = percentile(times, 0.5)
        result.takeover_max = times[-1]
        _log(
            f"  kill -9 of a replica with {len(orphans):,} jobs: polled again after"
            f" p50 {result.takeover_p50:.1f}s, max {result.takeover_max:.1f}s"
            f" ({result.takeover_kind})"
        )
        duplicated = log.duplicated_creates()
        if duplicated:
            _log(f"  WARNING: {len(duplicated)} external creates duplicated")
    return result


def render(results: Sequence[ReplicaResult], meta: dict[str, Any]) -> str:
    lines = [
        f"Command: `{meta['command']}`; {meta['date']}; {meta['source']}; {meta['machine']}.",
        "",
        "| replicas | live jobs | CreateTask/s | polls/s | GetTask/s round-robin (p50 / p99 ms)"
        " | replicas' CPU | kill -9 of a replica with N jobs: N, takeover p50 / max s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        summary = r.summary()
        kind = " (restart: no peer)" if r.takeover_kind == "restart" else ""
        lines.append(
            f"| {r.replicas} | {r.jobs:,} | {r.create_rate:,.0f} | {r.poll_rate:,.0f}"
            f" | {r.get_rate:,.0f} ({summary['get_p50_ms']:.1f} / {summary['get_p99_ms']:.1f})"
            f"{f', {r.get_errors} errors' if r.get_errors else ''}"
            f" | {r.cpu_percent:.0f}% | {r.victim_jobs:,}: {r.takeover_p50:.1f} /"
            f" {r.takeover_max:.1f}{kind} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replicas", description=__doc__)
    parser.add_argument("--replicas", type=int, action="append", help="replica counts (1 2 4)")
    parser.add_argument(
        "--victim-jobs", type=int, default=10_000, help="jobs of the replica killed (10,000)"
    )
    parser.add_argument(
        "--peer-jobs", type=int, default=2_000, help="jobs of each other replica (2,000)"
    )
    parser.add_argument(
        "--window", type=float, default=POLL_INTERVAL, help="measured seconds (a poll interval)"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the report")
    args = parser.parse_args(argv)
    counts = args.replicas or [1, 2, 4]

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"{stamp}-replicas"
    results: list[ReplicaResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        for count in counts:
            _log(f"{count} replica(s):")
            with durable_postgres(fsync=True) as url:
                if url is None:
                    _log("no PostgreSQL server binaries: nothing to run")
                    return 1
                where = Path(tmp) / f"replicas-{count}"
                results.append(
                    run_replicas(count, args.victim_jobs, args.peer_jobs, args.window, where, url)
                )
    command = " ".join(["python -m bench replicas", *(argv if argv is not None else sys.argv[2:])])
    meta = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": source(),
        "machine": machine(),
    }
    report = render(results, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    raw = {"meta": meta, "runs": [r.summary() for r in results]}
    (out / "results.json").write_text(json.dumps(raw, indent=1))
    print("\n" + report)
    print(f"written to {out}")
    return 0
