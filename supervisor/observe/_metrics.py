"""Prometheus metrics: Flyte's connector metrics, name for name, and the supervisor's own.

Flyte's connector service (flyte-sdk ``flyte.connectors``) exports, and dashboards read:

- ``flyte_connector_requests_success_total{task_type, operation}``
- ``flyte_connector_requests_failure_total{task_type, operation, error_code}``: the error
  code is an HTTP status number (Flyte uses 404 and 500); we map every gRPC status the same
  way (``HTTP_CODES``)
- ``flyte_connector_request_latency_seconds{task_type, operation}`` (a summary)
- ``flyte_connector_input_literal_bytes{task_type}`` (a summary, CreateTask inputs)

with ``operation`` one of ``create``, ``get``, ``delete`` (and here ``get_metrics``,
``get_logs`` too). The supervisor adds ``supervisor_*`` metrics: live actors by connector
and phase, polls and poll errors, poll lag behind schedule, external calls in flight,
external calls by operation, adoptions, journal batch size, commit latency and backlog,
and jobs resumed at start.

Where they are measured: the gRPC edge's one call wrapper (``RpcCall``), the actor's
``external()`` and poll (``ConnectorMetrics``, one per connector), the journal writer's
commit hook (``journal_committed``), and, at scrape time, collectors reading
``Supervisor.live_records()``, ``Journal.statistics()`` and the connectors' counters. The
RPC wrapper touches labelled children cached on first use (no label lookups per call); a
poll only adds to plain integers of its ``ConnectorMetrics``, exported at scrape time under
the names, types and labels prometheus_client's own metrics had.

Each ``Metrics`` has its own registry (tests make many); ``MetricsServer`` serves one over
HTTP from prometheus_client's own thread, never on the Trio loop.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from grpclib.const import Status
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from connectors import Phase

from ..journal import JobRecord, JournalStatistics

__all__ = [
    "EXTERNAL_OPERATIONS",
    "HTTP_CODES",
    "OPERATIONS",
    "ConnectorMetrics",
    "Metrics",
    "MetricsServer",
    "ReplicaStatistics",
    "RpcCall",
]

#: gRPC method -> Flyte's ``operation`` label. Other methods are not measured (as in Flyte).
OPERATIONS = {
    "CreateTask": "create",
    "GetTask": "get",
    "DeleteTask": "delete",
    "GetTaskMetrics": "get_metrics",
    "GetTaskLogs": "get_logs",
}

#: gRPC status -> the HTTP status number Flyte's ``error_code`` label carries.
HTTP_CODES: dict[Status, int] = {
    Status.OK: 200,
    Status.CANCELLED: 499,
    Status.UNKNOWN: 500,
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.FAILED_PRECONDITION: 400,
    Status.ABORTED: 409,
    Status.OUT_OF_RANGE: 400,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
    Status.UNAUTHENTICATED: 401,
}

#: Distinct task types measured per operation; callers choose task types, so beyond this
#: they are counted as ``other`` (bounded memory and series).
MAX_TASK_TYPES = 500
OTHER = "other"

POLL_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ConnectorMetrics:
    """One connector's counters, shared by its actors, read by a collector at scrape time.

    Hot path (every poll): plain integers and a list of bucket counts, where prometheus_client's
    children take a lock and a method call per update (about five per poll). Only the Trio
    thread updates them; the scrape thread reads them (a value read while a poll is under way
    is that of the poll before or after).
    """

    __slots__ = (
        "adoptions",
        "calls",
        "created",
        "in_flight",
        "lag_buckets",
        "lag_count",
        "lag_sum",
        "poll_errors",
        "polls",
    )

    def __init__(self) -> None:
        self.polls = 0
        self.poll_errors = 0
        self.in_flight = 0
        self.adoptions = 0
        #: by operation: create, get, delete
        self.calls: dict[str, int] = dict.fromkeys(EXTERNAL_OPERATIONS, 0)
        #: poll lag observations per bucket of ``POLL_LAG_BUCKETS`` (and one past the last)
        self.lag_buckets = [0] * (len(POLL_LAG_BUCKETS) + 1)
        self.lag_count = 0
        self.lag_sum = 0.0
        self.created = time.time()  # the ``_created`` samples, as prometheus_client's

    def count_call(self, operation: str) -> None:
        """Count a call to the external service for ``operation`` (others are not counted)."""
        calls = self.calls
        if operation in calls:
            calls[operation] += 1

    def observe_lag(self, seconds: float) -> None:
        """One poll started ``seconds`` behind its schedule (``supervisor_poll_lag_seconds``)."""
        self.lag_buckets[bisect.bisect_left(POLL_LAG_BUCKETS, seconds)] += 1
        self.lag_count += 1
        self.lag_sum += seconds


@dataclass(frozen=True, slots=True)
class _RpcChildren:
    success: Counter
    latency: Summary


class SupervisorSource(Protocol):
    """What the scrape-time collector reads from the supervisor (from another thread)."""

    @property
    def resumed(self) -> int: ...

    def live_records(self) -> Sequence[JobRecord]: ...

    def replica_statistics(self) -> ReplicaStatistics | None: ...


@dataclass(frozen=True, slots=True)
class ReplicaStatistics:
    """A replica's counters, as the scrape-time collector reports them."""

    owned: int  # jobs with a live actor here
    takeovers: int
    self_fenced: int
    heartbeat_age: float  # seconds since the last committed heartbeat


class JournalSource(Protocol):
    def statistics(self) -> JournalStatistics: ...


class RpcCall:
    """One RPC being measured: the edge reports the request once read, then the outcome."""

    __slots__ = ("_metrics", "_operation", "_started", "_task_type")

    def __init__(self, metrics: Metrics, operation: str | None) -> None:
        self._metrics = metrics
        self._operation = operation
        self._started = time.perf_counter()
        self._task_type = ""

    def received(self, request: Any) -> None:
        """Take the task type from the request (and the input size from a CreateTask)."""
        if self._operation is None or request is None:
            return
        if self._operation == "create":
            template = request.template
            self._task_type = template.type if template is not None else ""
            if request.inputs is not None:
                self._metrics.input_bytes(self._task_type).observe(len(bytes(request.inputs)))
        else:
            category = request.task_category
            self._task_type = category.name if category is not None else ""

    def finished(self, status: Status) -> None:
        operation = self._operation
        if operation is None:
            return
        elapsed = time.perf_counter() - self._started
        children = self._metrics.rpc_children(self._task_type, operation)
        children.latency.observe(elapsed)
        if status is Status.OK:
            children.success.inc()
        else:
            self._metrics.rpc_failure(self._task_type, operation, status).inc()


#: The operations an actor calls the external service for (``supervisor_external_calls_total``).
EXTERNAL_OPERATIONS = ("create", "get", "delete")


class Metrics:
    """Every metric of one server, in its own registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        # Flyte's names, types and labels (flyte-sdk flyte/connectors/_server.py).
        self._success = Counter(
            "flyte_connector_requests_success_total",
            "Total number of successful requests",
            ["task_type", "operation"],
            registry=r,
        )
        self._failure = Counter(
            "flyte_connector_requests_failure_total",
            "Total number of failed requests",
            ["task_type", "operation", "error_code"],
            registry=r,
        )
        self._latency = Summary(
            "flyte_connector_request_latency_seconds",
            "Time spent processing connector request",
            ["task_type", "operation"],
            registry=r,
        )
        self._input_bytes = Summary(
            "flyte_connector_input_literal_bytes",
            "Size of input literal",
            ["task_type"],
            registry=r,
        )
        # Ours. The connectors' counters are read at scrape time (``ConnectorMetrics``).
        self._connectors: dict[str, ConnectorMetrics] = {}
        self._connectors_lock = threading.Lock()
        r.register(_ConnectorCollector(self._connectors_now))
        self._batch_size = Histogram(
            "supervisor_journal_batch_size",
            "Puts committed together in one journal transaction (group commit)",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self._commit_seconds = Histogram(
            "supervisor_journal_commit_seconds",
            "Wall time of one journal commit",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        #: Journal operations that failed: each write retried by its actor, or the request
        #: answered UNAVAILABLE.
        self.journal_errors = Counter(
            "supervisor_journal_errors_total",
            "Journal reads and writes that failed (retried, or answered UNAVAILABLE)",
            registry=r,
        )
        #: Actors holding a result while they wait out a journal fault (0 when healthy).
        self.journal_waiting = Gauge(
            "supervisor_journal_writes_waiting",
            "Actors retrying a failed journal write while they hold its result",
            registry=r,
        )
        self._rpc: dict[tuple[str, str], _RpcChildren] = {}
        self._failures: dict[tuple[str, str, Status], Counter] = {}
        self._inputs: dict[str, Summary] = {}

    # -- RPCs (the edge) -------------------------------------------------------------------

    def rpc(self, method: str) -> RpcCall:
        """Start measuring a call of ``method`` (a no-op for unmeasured methods)."""
        return RpcCall(self, OPERATIONS.get(method))

    def rpc_children(self, task_type: str, operation: str) -> _RpcChildren:
        children = self._rpc.get((task_type, operation))
        if children is None:
            if len(self._rpc) >= MAX_TASK_TYPES * len(OPERATIONS):
                task_type = OTHER
            labels = {"task_type": task_type, "operation": operation}
            children = _RpcChildren(self._success.labels(**labels), self._latency.labels(**labels))
            self._rpc[(task_type, operation)] = children
        return children

    def rpc_failure(self, task_type: str, operation: str, status: Status) -> Counter:
        key = (task_type, operation, status)
        child = self._failures.get(key)
        if child is None:
            if len(self._failures) >= MAX_TASK_TYPES * len(OPERATIONS):
                task_type = OTHER
            code = str(HTTP_CODES.get(status, 500))
            child = self._failure.labels(task_type=task_type, operation=operation, error_code=code)
            self._failures[key] = child
        return child

    def input_bytes(self, task_type: str) -> Summary:
        child = self._inputs.get(task_type)
        if child is None:
            label = task_type if len(self._inputs) < MAX_TASK_TYPES else OTHER
            child = self._inputs[task_type] = self._input_bytes.labels(task_type=label)
        return child

    # -- actors, journal ---------------------------------------------------------------------

    def connector(self, name: str) -> ConnectorMetrics:
        """The counters of one connector (made once, then shared)."""
        found = self._connectors.get(name)
        if found is None:
            with self._connectors_lock:
                found = self._connectors.setdefault(name, ConnectorMetrics())
        return found

    def _connectors_now(self) -> list[tuple[str, ConnectorMetrics]]:
        with self._connectors_lock:
            return list(self._connectors.items())

    def journal_committed(self, puts: int, seconds: float) -> None:
        """The journal writer's hook: one batch of ``puts`` committed in ``seconds``."""
        self._batch_size.observe(puts)
        self._commit_seconds.observe(seconds)

    def watch(self, supervisor: SupervisorSource, journal: JournalSource | None = None) -> None:
        """Report the supervisor's live actors (and the journal's backlog) at scrape time."""
        self.registry.register(_SupervisorCollector(supervisor))
        if journal is not None:
            self.registry.register(_JournalCollector(journal))


class _SupervisorCollector:
    """Live actors by connector and phase, the oldest live job, and jobs resumed at start."""

    def __init__(self, source: SupervisorSource) -> None:
        self._source = source
        self._seen: set[tuple[str, str]] = set()  # report 0, not nothing, once a series existed
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the families depend on what is live

    def collect(self) -> Iterable[Metric]:
        records = self._source.live_records()
        now = time.time()
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[str, float] = {}
        for record in records:
            key = (record.connector, _phase_name(record.phase))
            counts[key] = counts.get(key, 0) + 1
            oldest[record.connector] = min(oldest.get(record.connector, now), record.created_at)
        live = GaugeMetricFamily(
            "supervisor_live_actors",
            "Jobs with a live actor, by connector and current phase",
            labels=["connector", "phase"],
        )
        with self._lock:
            self._seen.update(counts)
            for key in sorted(self._seen):
                live.add_metric(list(key), counts.get(key, 0))
        age = GaugeMetricFamily(
            "supervisor_oldest_live_job_age_seconds",
            "Age of the oldest job with a live actor, by connector",
            labels=["connector"],
        )
        for connector, created_at in sorted(oldest.items()):
            age.add_metric([connector], max(0.0, now - created_at))
        resumed = GaugeMetricFamily(
            "supervisor_jobs_resumed", "Unfinished jobs resumed from the journal at start"
        )
        resumed.add_metric([], self._source.resumed)
        replica = self._source.replica_statistics()
        if replica is None:
            return [live, age, resumed]
        owned = GaugeMetricFamily(
            "supervisor_jobs_owned", "Unfinished jobs this replica owns and runs"
        )
        owned.add_metric([], replica.owned)
        takeovers = CounterMetricFamily(
            "supervisor_takeovers", "Jobs this replica took over from dead or released replicas"
        )
        takeovers.add_metric([], replica.takeovers)
        fenced = CounterMetricFamily(
            "supervisor_self_fenced",
            "Times this replica's lease lapsed and its actors stopped acting",
        )
        fenced.add_metric([], replica.self_fenced)
        beat = GaugeMetricFamily(
            "supervisor_heartbeat_age_seconds",
            "Seconds since this replica's last committed heartbeat",
        )
        beat.add_metric([], replica.heartbeat_age)
        return [live, age, resumed, owned, takeovers, fenced, beat]


class _ConnectorCollector:
    """The ``ConnectorMetrics`` counters as prometheus_client's labelled metrics exported them
    (names, types, help, labels, ``_created`` samples, children in order of first use)."""

    def __init__(self, connectors: Callable[[], list[tuple[str, ConnectorMetrics]]]) -> None:
        self._connectors = connectors

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        connectors = self._connectors()
        # prometheus_client's switch for the ``_created`` samples (read per scrape, as it does).
        created = prometheus_metrics._use_created
        polls = CounterMetricFamily(
            "supervisor_polls", "Polls of external jobs (connector.get)", labels=["connector"]
        )
        errors = CounterMetricFamily(
            "supervisor_poll_errors",
            "Polls that raised (retried with backoff, or settled the job)",
            labels=["connector"],
        )
        lag = HistogramMetricFamily(
            "supervisor_poll_lag_seconds",
            "How late a poll started (under the connector's concurrency cap) behind its schedule",
            labels=["connector"],
        )
        in_flight = GaugeMetricFamily(
            "supervisor_external_calls_in_flight",
            "Calls to the external service under way (create, get, delete)",
            labels=["connector"],
        )
        calls = CounterMetricFamily(
            "supervisor_external_calls",
            "Calls to the external service (operation: create, get, delete)",
            labels=["connector", "operation"],
        )
        adoptions = CounterMetricFamily(
            "supervisor_adoptions",
            "Jobs adopted from a resource_meta the journal did not know",
            labels=["connector"],
        )
        for name, m in connectors:
            at = m.created if created else None
            polls.add_metric([name], float(m.polls), created=at)
            errors.add_metric([name], float(m.poll_errors), created=at)
            _add_lag(lag, name, m, at)
            in_flight.add_metric([name], float(m.in_flight))
            for operation, count in m.calls.items():
                calls.add_metric([name, operation], float(count), created=at)
            adoptions.add_metric([name], float(m.adoptions), created=at)
        return [polls, errors, lag, in_flight, calls, adoptions]


_go_float: Callable[[float], str] = floatToGoString  # how prometheus_client writes ``le``
_LAG_LE = [_go_float(bound) for bound in (*POLL_LAG_BUCKETS, math.inf)]


def _add_lag(
    family: HistogramMetricFamily, name: str, m: ConnectorMetrics, created: float | None
) -> None:
    counts = list(m.lag_buckets)  # one copy: the cumulative counts and the count agree
    total, buckets = 0, []
    for le, count in zip(_LAG_LE, counts, strict=True):
        total += count
        buckets.append((le, float(total)))
    family.add_metric([name], buckets, m.lag_sum)
    if created is not None:
        family.samples.append(
            Sample("supervisor_poll_lag_seconds_created", {"connector": name}, created, None)
        )


class _JournalCollector:
    def __init__(self, source: JournalSource) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        stats = self._source.statistics()
        pending = GaugeMetricFamily(
            "supervisor_journal_pending_puts",
            "Puts submitted to the journal and not yet committed (the writer's backlog)",
        )
        pending.add_metric([], stats.pending_puts)
        failed = CounterMetricFamily(
            "supervisor_journal_failed_batches", "Journal transactions that failed"
        )
        failed.add_metric([], stats.batches_failed)
        fenced = CounterMetricFamily(
            "supervisor_fenced_writes",
            "Journal writes refused: the job's row has another owner or epoch now",
        )
        fenced.add_metric([], stats.puts_fenced)
        return [pending, failed, fenced]


_PHASE_NAMES: dict[int, str] = {int(p): p.name or str(int(p)) for p in Phase}


def _phase_name(phase: int) -> str:
    return _PHASE_NAMES.get(phase) or str(phase)


class MetricsServer:
    """``/metrics`` over HTTP in prometheus_client's own thread. Use ``start``, then ``stop``."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @classmethod
    def start(
        cls, metrics: Metrics, host: str, port: int, *, pages: Pages | None = None
    ) -> MetricsServer:
        """Listen on ``host:port`` (0: a free port). Errors: OSError (address in use, ...).

        ``pages``: HTML for every GET other than ``/metrics`` (the journal web view), given
        the path and query; without it, prometheus_client's own server answers everything.
        """
        if pages is None:
            server, thread = start_http_server(port, addr=host, registry=metrics.registry)
            return cls(server, thread)
        app = _with_pages(make_wsgi_app(metrics.registry), pages)
        web = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
        thread = threading.Thread(target=web.serve_forever, name="metrics-and-ui", daemon=True)
        thread.start()
        return cls(web, thread)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket. Blocks up to ``timeout``: call it off the loop."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)


#: A page for a path (with its query): its HTTP status and HTML.
Pages = Callable[[str], tuple[int, str]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _with_pages(metrics_app: Any, pages: Pages) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        query = environ.get("QUERY_STRING") or ""
        status, body = pages(path + ("?" + query if query else ""))
        data = body.encode()
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data] if environ.get("REQUEST_METHOD") == "GET" else [b""]

    return app
