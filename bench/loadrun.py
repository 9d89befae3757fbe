"""Load runs: both servers under the same load, alternating, one fresh server per measurement.

For every scenario (workload, external latency, concurrency) the servers take turns:
ours, reference (one round), then reference, ours (the second round), and so on, so slow
drift on a shared machine falls on both. Each measurement starts a fresh server, runs the
load generator, and samples the server's CPU time at the edges of the measured window and
its peak RSS at the end; the simulated service's counters give the external calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import RPCS, LoadResult, LoadSpec, percentile, run_load
from bench.profile import Profiler
from bench.servers import (
    BenchServer,
    OursServer,
    ProcSample,
    ReferenceServer,
    read_stats,
    sample_tree,
)

__all__ = ["Measurement", "Scenario", "aggregate", "describe", "measure", "run_scenarios"]

#: Seconds after the window for the counters file to catch up.
_STATS_SETTLE = 0.3


@dataclass(frozen=True)
class Scenario:
    workload: str  # "lifecycle", "create" or "get"
    latency_ms: float
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.workload} {self.latency_ms:g}ms c{self.concurrency}"


@dataclass
class Measurement:
    server: str
    scenario: Scenario
    round: int
    load: LoadResult
    cpu_seconds: float
    hwm_kib: int
    external: dict[str, int] = field(default_factory=dict)


def _external_calls(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, int]:
    if before is None or after is None:
        return {}
    return {op: after["calls"][op] - before["calls"][op] for op in after["calls"]}


def measure(
    server: BenchServer,
    scenario: Scenario,
    *,
    round_: int,
    duration: float,
    warmup: float,
    profile: tuple[Path, Path] | None = None,
    channels: int = 1,
    on_edge: Callable[[str], None] | None = None,
) -> Measurement:
    """One measurement on a fresh ``server``; ``profile``: (py-spy, output) to profile it.

    CPU and peak RSS are summed over the server's process tree (``serve --workers N``);
    ``channels``: gRPC connections the load is spread over; ``on_edge("start"/"end")`` is
    called at the window's edges too.
    """
    spec = LoadSpec(
        workload=scenario.workload,
        concurrency=scenario.concurrency,
        duration=duration,
        warmup=warmup,
        # Create-only jobs use the 30 s poll interval: no poll falls in the window, so the
        # figure is the cost of a create alone (polls are measured by the scale runs).
        task_type="bench" if scenario.workload == "lifecycle" else "bench_scale",
        # A polled-only job runs for the whole measurement (an actor, not the journal, answers).
        job_seconds=3600.0 if scenario.workload == "get" else 2.0,
        channels=channels,
    )
    server.start()
    try:
        samples: dict[str, ProcSample] = {}
        stats: dict[str, dict[str, Any] | None] = {}
        profiler: list[Profiler] = []

        def on_window(edge: str) -> None:
            samples[edge] = sample_tree(server.pid)
            stats[edge] = read_stats(server.stats_file)
            if on_edge is not None:
                on_edge(edge)
            if edge == "start" and profile is not None:
                profiler.append(Profiler(profile[0], server.pid, profile[1], seconds=duration))

        result = run_load(server.address, spec, on_window)
        time.sleep(_STATS_SETTLE)
        stats["end"] = read_stats(server.stats_file)
        hwm = sample_tree(server.pid).hwm_kib
        for p in profiler:
            p.wait()
    finally:
        server.stop()
    return Measurement(
        server=server.name,
        scenario=scenario,
        round=round_,
        load=result,
        cpu_seconds=samples["end"].cpu_seconds - samples["start"].cpu_seconds,
        hwm_kib=hwm,
        external=_external_calls(stats.get("start"), stats.get("end")),
    )


def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    rounds: int,
    duration: float,
    warmup: float,
    workdir: Path,
    reference_env: Path | None,
    log: Callable[[str], None] = print,
) -> list[Measurement]:
    """Every scenario, ``rounds`` rounds each, the servers alternating (ABBA...)."""
    measurements: list[Measurement] = []
    for n, scenario in enumerate(scenarios):
        for round_ in range(rounds):
            names = ["ours", "reference"] if (round_ + n) % 2 == 0 else ["reference", "ours"]
            for name in names:
                if name == "reference" and reference_env is None:
                    continue
                where = workdir / f"{scenario.key.replace(' ', '-')}-{round_}-{name}"
                where.mkdir(parents=True)
                server: BenchServer
                if name == "ours":
                    server = OursServer(where, latency_ms=scenario.latency_ms)
                else:
                    assert reference_env is not None
                    server = ReferenceServer(reference_env, where, latency_ms=scenario.latency_ms)
                m = measure(server, scenario, round_=round_, duration=duration, warmup=warmup)
                measurements.append(m)
                log(describe(m))
    return measurements


def describe(m: Measurement) -> str:
    """One line for the log."""
    rates = ", ".join(f"{rpc} {m.load.rate(rpc):.0f}/s" for rpc in RPCS if m.load.count(rpc))
    cpu = m.cpu_seconds / m.load.total * 1e6 if m.load.total else float("nan")
    errors = sum(m.load.errors.values())
    return (
        f"  {m.scenario.key:>22} round {m.round} {m.server:>9}: {rates}; "
        f"{cpu:.0f} us CPU/request; peak RSS {m.hwm_kib / 1024:.0f} MiB"
        + (f"; {errors} errors {m.load.error_samples[:1]}" if errors else "")
    )


def aggregate(measurements: Sequence[Measurement]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario key and server: rates, latency quantiles, CPU, RSS, external calls.

    Rounds are pooled: counts and windows summed, latencies merged, peak RSS the maximum.
    """
    pooled: dict[str, dict[str, list[Measurement]]] = {}
    for m in measurements:
        pooled.setdefault(m.scenario.key, {}).setdefault(m.server, []).append(m)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, by_server in pooled.items():
        for server, ms in by_server.items():
            window = sum(m.load.window for m in ms)
            total = sum(m.load.total for m in ms)
            cpu = sum(m.cpu_seconds for m in ms)
            row: dict[str, Any] = {
                "rounds": len(ms),
                "window": window,
                "cpu_per_request_us": cpu / total * 1e6 if total else float("nan"),
                "server_cpu_util": cpu / window if window else 0.0,
                "client_cpu_util": sum(m.load.client_cpu for m in ms) / window if window else 0.0,
                "peak_rss_mib": max(m.hwm_kib for m in ms) / 1024,
                "errors": sum(sum(m.load.errors.values()) for m in ms),
                "rounds_rps": [m.load.rate("GetTask") or m.load.rate("CreateTask") for m in ms],
            }
            external: dict[str, int] = {}
            for m in ms:
                for op, n in m.external.items():
                    external[op] = external.get(op, 0) + n
            gets = sum(m.load.count("GetTask") for m in ms)
            row["external_calls"] = external
            row["external_gets_per_gettask"] = (
                external.get("get", 0) / gets if gets and external else float("nan")
            )
            for rpc in RPCS:
                latencies = [x for m in ms for x in m.load.latencies[rpc]]
                if latencies:
                    row[rpc] = {
                        "rps": len(latencies) / window,
                        "p50_ms": percentile(latencies, 0.5) * 1e3,
                        "p99_ms": percentile(latencies, 0.99) * 1e3,
                    }
            out.setdefault(key, {})[server] = row
    return out
