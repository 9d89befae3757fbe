"""The simulated external service that both servers' bench connectors call.

Plain Python, no event loop of its own: each connector awaits its own ``sleep`` (Trio or
asyncio) for ``latency`` seconds around every call, then asks this module what the job's
state is. A job "runs" for the ``duration`` chosen at create time; its state is computed
from the wall clock and what ``resource_meta`` carries (job id, start, duration), so a
restarted server finds its jobs exactly where they would be. Cancellations are kept in
memory.

The service counts the calls it receives and, for connectors that poll on a schedule
(ours), how late each poll came: the expected time of a poll is the end of the job's
previous poll (or of its create) plus the poll interval. A daemon thread writes these
counters to the JSON file named by ``$BENCH_STATS_FILE`` every ``STATS_PERIOD`` seconds,
which is how the harness reads them back from outside the server process.
"""

from __future__ import annotations

import gc
import json
import math
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = [
    "LAG_BUCKETS",
    "LATENCY_ENV",
    "STATS_ENV",
    "STATS_PERIOD",
    "SimulatedService",
    "lag_bucket_edges",
    "service",
]

LATENCY_ENV = "BENCH_SERVICE_LATENCY_MS"
"""Milliseconds every call to the simulated service takes (default 0)."""
STATS_ENV = "BENCH_STATS_FILE"
"""Where the service writes its counters (JSON); unset: nowhere."""
STATS_PERIOD = 0.1
"""Seconds between two writes of the counters file."""

#: Poll lag histogram: bucket i holds lags in [edge(i-1), edge(i)); bucket 0 is < 0.1 ms.
_LAG_FIRST_EDGE = 1e-4
_LAG_GROWTH = 1.05
LAG_BUCKETS = 400  # up to 1e-4 * 1.05**399 s, about 3.0e4 s; the last bucket is open-ended


def lag_bucket_edges() -> list[float]:
    """Upper edge (seconds) of every lag bucket; the last one is infinite."""
    edges = [_LAG_FIRST_EDGE * _LAG_GROWTH**i for i in range(LAG_BUCKETS - 1)]
    return [*edges, math.inf]


def _lag_bucket(lag: float) -> int:
    if lag < _LAG_FIRST_EDGE:
        return 0
    index = int(math.log(lag / _LAG_FIRST_EDGE) / math.log(_LAG_GROWTH)) + 1
    return min(index, LAG_BUCKETS - 1)


class SimulatedService:
    """In-process external service state: call counters, cancellations, poll bookkeeping."""

    def __init__(self, latency: float, stats_path: Path | None) -> None:
        self.latency = latency
        self.stats_path = stats_path
        self.calls = {"create": 0, "get": 0, "delete": 0}
        self.cancelled: set[str] = set()
        self.lag_histogram = [0] * LAG_BUCKETS
        self.lag_count = 0
        self.lag_sum = 0.0
        self.first_polls = 0
        self.last_first_poll_at = 0.0  # wall clock
        self._created_at: dict[str, float] = {}  # job id -> monotonic time, until polled
        self._last_poll_end: dict[str, float] = {}  # job id -> monotonic time
        self._started_at = time.time()
        # Collections by generation, and their seconds: how much of a poll is the collector's.
        self.gc_collections = [0, 0, 0]
        self.gc_seconds = [0.0, 0.0, 0.0]
        self._gc_began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            generation = info["generation"]
            self.gc_collections[generation] += 1
            self.gc_seconds[generation] += time.perf_counter() - self._gc_began

    # -- the service's API, called by the connectors after their latency sleep -------------

    def create(self, job_id: str | None = None) -> tuple[str, float]:
        """Start a job (``job_id``: a client-chosen id, else a new one); its id and start."""
        self.calls["create"] += 1
        return job_id or uuid.uuid4().hex, time.time()

    def state(self, job_id: str, started: float, duration: float) -> str:
        """RUNNING until ``duration`` seconds after ``started``, then DONE (or CANCELLED)."""
        self.calls["get"] += 1
        if job_id in self.cancelled:
            return "CANCELLED"
        return "RUNNING" if time.time() < started + duration else "DONE"

    def cancel(self, job_id: str) -> None:
        self.calls["delete"] += 1
        self.cancelled.add(job_id)

    # -- poll bookkeeping for connectors that poll on their own schedule -------------------

    def created(self, job_id: str) -> None:
        """The create of ``job_id`` returned: its first poll is due one interval later."""
        self._created_at[job_id] = time.monotonic()

    def poll_started(self, job_id: str, interval: float) -> None:
        """Count the job's first poll in this process; record how late a poll is.

        A poll is due one interval after the end of the job's previous poll, or of its
        create; a job resumed after a restart has neither here (its first poll is counted,
        not timed).
        """
        previous = self._last_poll_end.get(job_id)
        if previous is None:
            self.first_polls += 1
            self.last_first_poll_at = time.time()
            previous = self._created_at.pop(job_id, None)
            if previous is None:
                return
        lag = max(0.0, time.monotonic() - (previous + interval))
        self.lag_histogram[_lag_bucket(lag)] += 1
        self.lag_count += 1
        self.lag_sum += lag

    def poll_ended(self, job_id: str) -> None:
        self._last_poll_end[job_id] = time.monotonic()

    # -- counters file ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started_at": self._started_at,
            "written_at": time.time(),
            "latency": self.latency,
            "calls": dict(self.calls),
            "lag_histogram": list(self.lag_histogram),
            "lag_count": self.lag_count,
            "lag_sum": self.lag_sum,
            "first_polls": self.first_polls,
            "last_first_poll_at": self.last_first_poll_at,
            "gc_collections": list(self.gc_collections),
            "gc_seconds": list(self.gc_seconds),
        }

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        # The pid: the workers of ``serve --workers N`` share one path (the last write wins).
        temporary = self.stats_path.with_name(f"{self.stats_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.snapshot()))
        os.replace(temporary, self.stats_path)

    def start_writer(self) -> None:
        """Write the counters file every ``STATS_PERIOD`` seconds from a daemon thread."""
        if self.stats_path is None:
            return

        def run() -> None:
            while True:
                self.write_stats()
                time.sleep(STATS_PERIOD)

        threading.Thread(target=run, name="bench-stats", daemon=True).start()


_service: SimulatedService | None = None
_service_lock = threading.Lock()


def service() -> SimulatedService:
    """The process's simulated service, configured from the environment on first use."""
    global _service
    with _service_lock:
        if _service is None:
            latency = float(os.environ.get(LATENCY_ENV, "0")) / 1000.0
            path = os.environ.get(STATS_ENV)
            _service = SimulatedService(latency, Path(path) if path else None)
            _service.start_writer()
        return _service
