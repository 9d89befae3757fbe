"""The benchmark command: ``python -m bench [--quick | --tiny] [options]``.

Runs, in order: the load runs (both servers, alternating), the scale runs (our server),
the journal commit runs, Propeller's cadence (both servers: external calls when GetTask
comes every 30 s per task, 10 QPS at most) and ``serve --workers`` 1 vs 2 (PostgreSQL);
prints the report and writes it (Markdown and JSON) under ``bench/results/``.
``--profile`` instead records py-spy profiles of both servers under load and of our server
resuming jobs (see ``bench.profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.cadence import CadenceSpec, run_cadence
from bench.commits import durable_postgres, measure_commits, sqlite_url
from bench.loadrun import Scenario, aggregate, measure, run_scenarios
from bench.profile import Profiler, summarize
from bench.report import render
from bench.scale import ScaleResult, ScaleSpec, create_jobs, run_scale
from bench.servers import (
    BENCH_DIR,
    REFERENCE_ENV,
    REFERENCE_REQUIREMENTS,
    OursServer,
    ReferenceServer,
    ensure_reference_env,
    reference_env_ready,
)
from bench.workers import run_workers

__all__ = ["PARTS", "PRESETS", "Preset", "machine", "main", "run", "source"]

RESULTS_DIR = BENCH_DIR / "results"
PARTS = ("load", "scale", "journal", "cadence", "workers")
#: The issue's loads for ``serve --workers``: lifecycle and create, 0 ms, concurrency 64.
_WORKER_SCENARIOS = (Scenario("lifecycle", 0, 64), Scenario("create", 0, 64))


@dataclass(frozen=True)
class Preset:
    rounds: int  # measurements of each server per load scenario
    duration: float  # measured window of a load run, seconds
    warmup: float
    scenarios: tuple[Scenario, ...]
    scale: tuple[int, ...]
    scale_window: float  # 0: no steady-state measurement
    journal_writers: tuple[int, ...]
    journal_window: float
    postgres: bool
    cadence: tuple[CadenceSpec, ...]
    workers_scenarios: tuple[Scenario, ...]
    workers_rounds: int
    workers_duration: float
    workers_warmup: float
    journal_warmup: float = 1.0
    worker_counts: tuple[int, ...] = (1, 2)


def _matrix(concurrency: Sequence[int], latencies: Sequence[float]) -> tuple[Scenario, ...]:
    lifecycle = [Scenario("lifecycle", ms, c) for ms in latencies for c in concurrency]
    creates = [Scenario("create", ms, max(concurrency)) for ms in latencies]
    # GetTask alone (one job per worker): the per-call cost without the durable creates and
    # deletes of the lifecycle.
    gets = [Scenario("get", ms, max(concurrency)) for ms in latencies]
    return (*lifecycle, *creates, *gets)


PRESETS = {
    "full": Preset(
        rounds=2,
        duration=15.0,
        warmup=3.0,
        scenarios=_matrix((16, 64), (0, 50)),
        scale=(1_000, 10_000, 100_000),
        scale_window=60.0,
        journal_writers=(100, 1_000, 10_000),
        journal_window=10.0,
        postgres=True,
        # Under Propeller's 10 QPS cap (150 tasks: 5 GetTask/s) and far over it (3,000).
        cadence=(CadenceSpec(150, window=60.0), CadenceSpec(3_000, window=60.0)),
        workers_scenarios=_WORKER_SCENARIOS,
        workers_rounds=2,
        workers_duration=10.0,
        workers_warmup=3.0,
    ),
    "quick": Preset(
        rounds=1,
        duration=5.0,
        warmup=2.0,
        scenarios=_matrix((16, 64), (0, 50)),
        scale=(2_000,),
        scale_window=30.0,
        journal_writers=(1_000,),
        journal_window=4.0,
        postgres=True,
        cadence=(CadenceSpec(150, window=30.0), CadenceSpec(1_000, window=30.0)),
        workers_scenarios=_WORKER_SCENARIOS,
        workers_rounds=1,
        workers_duration=5.0,
        workers_warmup=2.0,
    ),
    # The CI smoke run: every part once, for seconds, so the harness never rots.
    "tiny": Preset(
        rounds=1,
        duration=0.7,
        warmup=0.3,
        scenarios=(Scenario("lifecycle", 0, 4), Scenario("create", 0, 4)),
        scale=(20,),
        scale_window=0.0,
        journal_writers=(10,),
        journal_window=0.3,
        postgres=False,
        journal_warmup=0.2,
        # Task type ``bench`` (ours polls it every 0.5 s) and a 0.5 s resync: 3 tasks under
        # the cap, 20 over it, in a second each.
        cadence=(
            CadenceSpec(3, window=1.0, resync=0.5, task_type="bench", poll_interval=0.5),
            CadenceSpec(20, window=1.0, resync=0.5, task_type="bench", poll_interval=0.5),
        ),
        # Only where PostgreSQL's server binaries are (else "not run").
        workers_scenarios=(Scenario("lifecycle", 0, 8),),
        workers_rounds=1,
        workers_duration=0.7,
        workers_warmup=0.3,
    ),
}


def _log(message: str) -> None:
    print(message, flush=True)


def _versions(reference: bool) -> str:
    ours = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("trio", "trio-asyncio", "grpclib", "betterproto2", "sqlalchemy", "grpcio")
    )
    ref = f"; reference {REFERENCE_REQUIREMENTS[0]}" if reference else "; no reference"
    return f"Python {platform.python_version()}, {ours}{ref}"


def source() -> str:
    """Which code was measured: ``$BENCH_SOURCE``, else the git commit of the working tree."""
    if os.environ.get("BENCH_SOURCE"):
        return os.environ["BENCH_SOURCE"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {system}"


def _journal_runs(preset: Preset, workdir: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []

    def record(label: str, url: str, backend: str, writers: int) -> None:
        r = measure_commits(
            url, backend, writers, window=preset.journal_window, warmup=preset.journal_warmup
        )
        runs.append({"label": label, **r.__dict__, "rate": r.rate, "mean_batch": r.mean_batch})
        _log(
            f"  {label}, {writers} writers: {r.rate:,.0f} transitions/s (batch {r.mean_batch:.0f})"
        )

    for writers in preset.journal_writers:
        record(
            "SQLite (WAL, synchronous=FULL)",
            sqlite_url(workdir, f"commits-{writers}.db"),
            "sqlite",
            writers,
        )
    if not preset.postgres:
        return runs
    with durable_postgres(fsync=True) as url:
        if url is None:
            _log("  no PostgreSQL server binaries: PostgreSQL skipped")
            return runs
        for writers in preset.journal_writers:
            record("PostgreSQL 15 (fsync on)", url, "postgresql", writers)
    with durable_postgres(fsync=False) as url:
        assert url is not None
        writers = max(preset.journal_writers)
        record("PostgreSQL 15 (fsync off, as in the tests)", url, "postgresql-nofsync", writers)
    return runs


def run(preset: Preset, *, reference: bool, workdir: Path, parts: set[str]) -> dict[str, Any]:
    """Run the ``parts`` (of ``PARTS``) of ``preset``; the results."""
    started = time.monotonic()
    env = REFERENCE_ENV if reference else None
    results: dict[str, Any] = {
        "parts": sorted(parts),
        "reference": reference,
        "load": {},
        "scale": [],
        "journal": [],
        "cadence": [],
        "workers": None,
    }
    if "load" in parts:
        _log(f"load runs ({'ours and reference' if env else 'ours only'}):")
        measurements = run_scenarios(
            preset.scenarios,
            rounds=preset.rounds,
            duration=preset.duration,
            warmup=preset.warmup,
            workdir=workdir / "load",
            reference_env=env,
            log=_log,
        )
        results["load"] = aggregate(measurements)
    if "scale" in parts:
        for jobs in preset.scale:
            _log(f"scale run, {jobs:,} jobs:")
            where = workdir / f"scale-{jobs}"
            where.mkdir(parents=True)
            spec = ScaleSpec(jobs, window=preset.scale_window)
            results["scale"].append(run_scale(spec, where, log=_log).summary())
            shutil.rmtree(where, ignore_errors=True)  # the journal of 100,000 jobs is large
    if "journal" in parts:
        _log("journal commits:")
        results["journal"] = _journal_runs(preset, workdir)
    if "cadence" in parts:
        _log("Propeller's cadence (GetTask every resync period per task, 10 QPS at most):")
        results["cadence"] = run_cadence(
            preset.cadence, workdir / "cadence", reference_env=env, log=_log
        )
    if "workers" in parts:
        counts = " vs ".join(str(n) for n in preset.worker_counts)
        _log(f"serve --workers {counts}, durable PostgreSQL:")
        results["workers"] = run_workers(
            preset.workers_scenarios,
            counts=preset.worker_counts,
            rounds=preset.workers_rounds,
            duration=preset.workers_duration,
            warmup=preset.workers_warmup,
            workdir=workdir / "workers",
            log=_log,
        )
    results["seconds"] = time.monotonic() - started
    return results


def profile(workdir: Path, out: Path, *, seconds: float, jobs: int) -> None:
    """py-spy profiles: both servers under the lifecycle and create loads (0 ms, c64), and
    our server resuming ``jobs`` jobs after kill -9. Writes stacks and summaries to ``out``.
    """
    py_spy = REFERENCE_ENV / "bin" / "py-spy"
    out.mkdir(parents=True, exist_ok=True)
    for scenario in (Scenario("lifecycle", 0, 64), Scenario("create", 0, 64)):
        for name in ("ours", "reference"):
            where = workdir / f"profile-{scenario.workload}-{name}"
            where.mkdir(parents=True)
            server = (
                OursServer(where, latency_ms=0)
                if name == "ours"
                else ReferenceServer(REFERENCE_ENV, where, latency_ms=0)
            )
            stacks = out / f"{scenario.workload}-{name}.collapsed"
            measure(
                server, scenario, round_=0, duration=seconds, warmup=2.0, profile=(py_spy, stacks)
            )
            _write_summary(stacks, f"{scenario.key}, {name}")
    _profile_resume(py_spy, workdir / "profile-resume", out, seconds=seconds, jobs=jobs)
    _profile_commits(py_spy, workdir, out, seconds=seconds)


def _profile_resume(py_spy: Path, where: Path, out: Path, *, seconds: float, jobs: int) -> None:
    """Our server from its spawn, with ``jobs`` unfinished jobs in the journal."""
    where.mkdir(parents=True)
    server = OursServer(where, latency_ms=0, run="live")
    server.start()
    try:
        asyncio.run(create_jobs(server, jobs, ScaleResult(jobs), _log))
        server.kill()
        server.restart_as("resumed")
        server.process.spawn()
        stacks = out / "resume-ours.collapsed"
        time.sleep(0.3)  # the process must exist for py-spy to attach
        Profiler(py_spy, server.pid, stacks, seconds=seconds).wait(timeout=seconds + 60)
    finally:
        server.stop()
    _write_summary(stacks, f"resume of {jobs} jobs after kill -9, ours")


def _profile_commits(py_spy: Path, workdir: Path, out: Path, *, seconds: float) -> None:
    """The journal commit run (SQLite, 1,000 writers) in a process of its own."""
    stacks = out / "journal-sqlite.collapsed"
    url = sqlite_url(workdir, "profile-commits.db")
    code = (
        "from bench.commits import measure_commits as m; "
        f"m({url!r}, 'sqlite', 1000, window={seconds})"
    )
    command = [str(py_spy), "record", "--rate", "250", "--format", "raw", "--threads"]
    subprocess.run(
        [*command, "--output", str(stacks), "--", sys.executable, "-c", code],
        cwd=BENCH_DIR.parent,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _write_summary(stacks, "journal commits, SQLite, 1,000 writers")


def _write_summary(stacks: Path, title: str) -> None:
    if not stacks.exists():
        _log(f"  no profile for {title}")
        return
    text = f"{title}\n{summarize(stacks)}"
    stacks.with_suffix(".txt").write_text(text)
    _log(text)


def _scenario(text: str) -> Scenario:
    """``WORKLOAD:MS:C``, e.g. ``get:0:64``."""
    try:
        workload, latency, concurrency = text.split(":")
        if workload not in ("lifecycle", "create", "get"):
            raise ValueError(f"unknown workload {workload!r}")
        return Scenario(workload, float(latency), int(concurrency))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="one round, short windows, 2,000 jobs")
    size.add_argument("--tiny", action="store_true", help="seconds: the CI smoke run")
    parser.add_argument(
        "--scale", type=int, action="append", metavar="N", help="scale run with N jobs (repeatable)"
    )
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only these parts (repeatable)"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference server (ours only)"
    )
    parser.add_argument(
        "--reference-if-present",
        action="store_true",
        help="use the reference environment if it exists; never create it",
    )
    parser.add_argument(
        "--scenario",
        type=_scenario,
        action="append",
        metavar="WORKLOAD:MS:C",
        help="load scenario instead of the preset's (repeatable), e.g. get:0:64; workloads: "
        "lifecycle, create, get (one job per worker, GetTask only)",
    )
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles instead")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report")
    args = parser.parse_args(argv)

    name = "tiny" if args.tiny else "quick" if args.quick else "full"
    preset = PRESETS[name]
    if args.scale:
        preset = replace(preset, scale=tuple(args.scale))
    if args.scenario:
        preset = replace(preset, scenarios=tuple(args.scenario))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"{stamp}-{name}"
    if args.no_reference:
        reference = False
    elif args.reference_if_present:
        reference = reference_env_ready()
    else:
        ensure_reference_env()
        reference = True

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        if args.profile:
            ensure_reference_env()  # py-spy lives there
            profile(workdir, out, seconds=preset.duration, jobs=max(preset.scale))
            return 0
        started = time.monotonic()
        results = run(
            preset,
            reference=reference,
            workdir=workdir,
            parts=set(args.only or ()) or set(PARTS),
        )
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    results["meta"] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": command,
        "preset": name,
        "seconds": time.monotonic() - started,
        "versions": _versions(reference),
        "source": source(),
    }
    report = render(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n" + report)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
