"""Scale runs: N live jobs on one process of our server, then kill -9 and resume.

1. Start our server (SQLite journal) and create N ``bench_scale`` jobs (poll every 30 s,
   running far longer than the run) through CreateTask, ``CREATE_CONCURRENCY`` at a time.
2. Once every job has been polled at least once, measure for ``window`` seconds: polls
   and their lag behind schedule (from the bench connector), server CPU per poll, RSS per
   live job, and the latency of GetTasks sent at ``probe_rate`` per second (Propeller's
   default rate limit is 10 QPS) to random jobs.
3. kill -9 the server with the N jobs in its journal, start it again, and time how long it
   takes until it serves and until every job has been polled again.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio
from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc

from bench.load import CALL_TIMEOUT, create_request, percentile
from bench.servers import OursServer, read_stats, sample_process
from bench.service import lag_bucket_edges

__all__ = ["ScaleResult", "ScaleSpec", "create_jobs", "lag_quantile", "run_scale"]

TASK_TYPE = "bench_scale"
POLL_INTERVAL = 30.0  # bench.ours.ScaleConnector.poll_interval
CREATE_CONCURRENCY = 32
#: Creating stops after this long; the run goes on with the jobs created so far.
CREATE_BUDGET = 900.0
#: Jobs created before the RSS baseline is taken (imports and caches warm up on them).
WARM_JOBS = 100
RESUME_TIMEOUT = 1800.0
JOB_SECONDS = 24 * 3600.0
_RESUMED = re.compile(r"resumed (?P<count>\d+) job\(s\)")


@dataclass(frozen=True)
class ScaleSpec:
    jobs: int
    window: float = 60.0  # steady-state measurement; 0 skips steady state
    probe_rate: float = 10.0
    latency_ms: float = 0.0


@dataclass
class ScaleResult:
    jobs: int  # live jobs: external creates, whether or not the client saw the answer
    answered: int = 0  # CreateTasks answered OK
    create_seconds: float = 0.0
    create_errors: int = 0
    rss_idle_kib: int = 0
    rss_base_kib: int = 0
    rss_live_kib: int = 0
    window: float = 0.0
    polls: int = 0
    cpu_seconds: float = 0.0
    lag_histogram: list[int] = field(default_factory=list)
    probe_latencies: list[float] = field(default_factory=list)
    probe_errors: int = 0
    resume_serving_seconds: float = 0.0
    resume_all_polled_seconds: float = 0.0
    resume_polled: int = 0
    rss_resumed_kib: int = 0
    hwm_resumed_kib: int = 0

    @property
    def create_rate(self) -> float:
        """CreateTasks answered per second (after the warm-up jobs)."""
        created = self.answered - min(WARM_JOBS, self.answered)
        return created / self.create_seconds if self.create_seconds else 0.0

    @property
    def rss_per_job_bytes(self) -> float:
        live = self.jobs - min(WARM_JOBS, self.jobs)
        return (self.rss_live_kib - self.rss_base_kib) * 1024 / live if live else 0.0

    @property
    def cpu_per_poll_us(self) -> float:
        return self.cpu_seconds / self.polls * 1e6 if self.polls else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "answered": self.answered,
            "create_rate": self.create_rate,
            "create_errors": self.create_errors,
            "rss_idle_mib": self.rss_idle_kib / 1024,
            "rss_live_mib": self.rss_live_kib / 1024,
            "rss_per_job_bytes": self.rss_per_job_bytes,
            "window": self.window,
            "polls": self.polls,
            "polls_per_second": self.polls / self.window if self.window else 0.0,
            "cpu_per_poll_us": self.cpu_per_poll_us,
            "server_cpu_util": self.cpu_seconds / self.window if self.window else 0.0,
            "lag_p50": lag_quantile(self.lag_histogram, 0.5),
            "lag_p99": lag_quantile(self.lag_histogram, 0.99),
            "probe_gets": len(self.probe_latencies),
            "probe_errors": self.probe_errors,
            "probe_p50": percentile(self.probe_latencies, 0.5),
            "probe_p99": percentile(self.probe_latencies, 0.99),
            "resume_serving_seconds": self.resume_serving_seconds,
            "resume_all_polled_seconds": self.resume_all_polled_seconds,
            "resume_polled": self.resume_polled,
            "rss_resumed_mib": self.rss_resumed_kib / 1024,
            "hwm_resumed_mib": self.hwm_resumed_kib / 1024,
        }


def lag_quantile(histogram: list[int], q: float) -> float:
    """Upper edge of the lag bucket holding the ``q``-quantile; NaN for no samples."""
    total = sum(histogram)
    if not total:
        return float("nan")
    rank = q * total
    seen = 0
    for count, edge in zip(histogram, lag_bucket_edges(), strict=True):
        seen += count
        if seen >= rank:
            return edge
    return float("inf")


def run_scale(spec: ScaleSpec, workdir: Path, *, log: Any = print) -> ScaleResult:
    """Run steps 1-3 on a fresh journal in ``workdir``."""
    result = ScaleResult(spec.jobs)
    server = OursServer(workdir, latency_ms=spec.latency_ms, run="live")
    server.start()
    try:
        result.rss_idle_kib = sample_process(server.pid).rss_kib
        metas = asyncio.run(create_jobs(server, spec.jobs, result, log))
        if spec.window > 0:
            asyncio.run(_steady_state(server, spec, metas, result, log))
        server.kill()
        _resume(server, result.jobs, result, log)
    finally:
        server.stop()
    return result


async def create_jobs(server: OursServer, jobs: int, result: ScaleResult, log: Any) -> list[bytes]:
    """Create ``jobs`` long-running ``bench_scale`` jobs; their resource_metas."""
    metas: list[bytes] = []
    warm = min(WARM_JOBS, jobs)
    budget = [warm]  # creates left in the current phase, shared by the creators

    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)

        async def creator() -> None:
            while budget[0] > 0 and time.monotonic() < give_up:
                budget[0] -= 1
                try:
                    response = await stub.CreateTask(
                        create_request(JOB_SECONDS, TASK_TYPE), timeout=CALL_TIMEOUT
                    )
                    metas.append(response.resource_meta)
                except grpc.aio.AioRpcError:
                    result.create_errors += 1

        give_up = time.monotonic() + CREATE_BUDGET
        await asyncio.gather(*(creator() for _ in range(CREATE_CONCURRENCY)))
        result.rss_base_kib = sample_process(server.pid).rss_kib
        budget[0] = jobs - warm
        started = time.monotonic()
        give_up = started + CREATE_BUDGET
        progress = asyncio.create_task(_report_progress(metas, jobs, started, log))
        await asyncio.gather(*(creator() for _ in range(CREATE_CONCURRENCY)))
        progress.cancel()
        result.create_seconds = time.monotonic() - started
    # A create the client gave up on (deadline) may still have made a job: count them all.
    await asyncio.sleep(0.5)
    stats = read_stats(server.stats_file)
    result.answered = len(metas)
    result.jobs = stats["calls"]["create"] if stats else len(metas)
    log(
        f"  created {result.jobs} jobs in {result.create_seconds:.1f}s "
        f"({result.create_rate:.0f}/s, {result.create_errors} CreateTask errors)"
    )
    return metas


async def _report_progress(metas: list[bytes], jobs: int, started: float, log: Any) -> None:
    step = max(1, jobs // 10)
    shown = 0
    while True:
        await asyncio.sleep(1.0)
        if len(metas) >= shown + step:
            shown = len(metas) // step * step
            elapsed = time.monotonic() - started
            log(f"    {len(metas):,} created after {elapsed:.0f}s ({len(metas) / elapsed:.0f}/s)")


async def _steady_state(
    server: OursServer, spec: ScaleSpec, metas: list[bytes], result: ScaleResult, log: Any
) -> None:
    # The last job created polls for the first time one interval after its create.
    log(f"  waiting {POLL_INTERVAL + 2:.0f}s for every job's first poll")
    await asyncio.sleep(POLL_INTERVAL + 2.0)
    before = read_stats(server.stats_file)
    cpu_before = sample_process(server.pid)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
        await _probe(stub, metas, spec, result)
    cpu_after = sample_process(server.pid)
    await asyncio.sleep(0.3)  # one more write of the counters file
    after = read_stats(server.stats_file)
    assert before is not None
    assert after is not None
    result.window = cpu_after.at - cpu_before.at
    result.cpu_seconds = cpu_after.cpu_seconds - cpu_before.cpu_seconds
    result.polls = after["calls"]["get"] - before["calls"]["get"]
    result.lag_histogram = [
        b - a for a, b in zip(before["lag_histogram"], after["lag_histogram"], strict=True)
    ]
    result.rss_live_kib = cpu_after.rss_kib
    s = result.summary()
    log(
        f"  steady: {s['polls_per_second']:.0f} polls/s, lag p50 {s['lag_p50'] * 1e3:.1f} ms "
        f"p99 {s['lag_p99'] * 1e3:.1f} ms, {s['rss_per_job_bytes']:.0f} B/job, "
        f"GetTask p99 {s['probe_p99'] * 1e3:.1f} ms"
    )


async def _probe(stub: Any, metas: list[bytes], spec: ScaleSpec, result: ScaleResult) -> None:
    """GetTask for random jobs at ``spec.probe_rate`` per second for ``spec.window`` seconds."""
    category = pb.TaskCategory(name=TASK_TYPE, version=0)
    rng = random.Random(0)
    period = 1.0 / spec.probe_rate
    start = time.monotonic()
    n = 0
    while (next_at := start + n * period) < start + spec.window:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        request = pb.GetTaskRequest(task_category=category, resource_meta=rng.choice(metas))
        sent = time.perf_counter()
        try:
            await stub.GetTask(request, timeout=CALL_TIMEOUT)
            result.probe_latencies.append(time.perf_counter() - sent)
        except grpc.aio.AioRpcError:
            result.probe_errors += 1
        n += 1


def _resume(server: OursServer, jobs: int, result: ScaleResult, log: Any) -> None:
    """kill -9 happened: restart, and time serving and every unfinished job's next poll."""
    server.restart_as("resumed")
    spawned = time.time()
    server.process.spawn()
    server.process.wait_serving(timeout=RESUME_TIMEOUT)
    result.resume_serving_seconds = time.time() - spawned
    # Every unfinished job in the journal, as the server counts them (the CreateTasks whose
    # answer the client gave up on may have made jobs after we counted).
    resumed = _RESUMED.search(server.process.stdout_text())
    if resumed is not None:
        jobs = int(resumed["count"])
    deadline = time.monotonic() + RESUME_TIMEOUT
    stats = read_stats(server.stats_file)
    while stats is None or stats["first_polls"] < jobs:
        if time.monotonic() > deadline or not server.process.running:
            break
        time.sleep(0.2)
        stats = read_stats(server.stats_file)
    if stats is not None:
        result.resume_polled = stats["first_polls"]
        if stats["first_polls"] >= jobs:
            result.resume_all_polled_seconds = stats["last_first_poll_at"] - spawned
    sample = sample_process(server.pid)
    result.rss_resumed_kib, result.hwm_resumed_kib = sample.rss_kib, sample.hwm_kib
    log(
        f"  resume after kill -9: serving after {result.resume_serving_seconds:.1f}s, "
        f"{result.resume_polled}/{jobs} jobs polled again after "
        f"{result.resume_all_polled_seconds:.1f}s"
    )
