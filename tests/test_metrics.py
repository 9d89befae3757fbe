"""Prometheus metrics: Flyte's connector metrics by name and label, the supervisor's own
(on MockClock with a FakeService: exact counts), the journal's commit hook, the HTTP
endpoint, and a real server scraped over HTTP.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
import trio.testing
from grpclib.const import Status

from connectors import ConnectorRegistry
from connectors.testing import FakeConnector, FakeService
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from flyteproto.flyteidl2.task import Inputs, NamedLiteral
from supervisor import Supervisor
from supervisor.journal import (
    CreateState,
    DeleteState,
    InMemoryJournal,
    JobRecord,
    Journal,
    JournalStatistics,
    Put,
)
from supervisor.observe import (
    MAX_TASK_TYPES,
    OPERATIONS,
    Metrics,
    MetricsServer,
    ReplicaStatistics,
)
from tests.support.operators import (
    CALL_TIMEOUT,
    SAMPLE_ARGS,
    category,
    create_request,
    sample,
    scrape,
    stub,
)
from tests.support.server import ServerProcess

FAKE = "Fake connector"


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- RPC metrics: Flyte's names and labels ---------------------------------------------------


def test_a_successful_call_counts_under_flytes_names() -> None:
    metrics = Metrics()
    call = metrics.rpc("GetTask")
    call.received(pb.GetTaskRequest(task_category=pb.TaskCategory(name="echo")))
    call.finished(Status.OK)
    labels = {"task_type": "echo", "operation": "get"}
    assert value(metrics, "flyte_connector_requests_success_total", **labels) == 1
    assert value(metrics, "flyte_connector_request_latency_seconds_count", **labels) == 1


def test_a_failed_call_counts_with_its_http_error_code_and_its_latency() -> None:
    metrics = Metrics()
    for status in (Status.NOT_FOUND, Status.INTERNAL, Status.INTERNAL):
        call = metrics.rpc("DeleteTask")
        call.received(pb.DeleteTaskRequest(task_category=pb.TaskCategory(name="bq")))
        call.finished(status)
    failures = "flyte_connector_requests_failure_total"
    labels = {"task_type": "bq", "operation": "delete"}
    assert value(metrics, failures, **labels, error_code="404") == 1
    assert value(metrics, failures, **labels, error_code="500") == 2
    assert value(metrics, "flyte_connector_requests_success_total", **labels) == 0
    assert value(metrics, "flyte_connector_request_latency_seconds_count", **labels) == 3


def test_create_measures_the_size_of_its_inputs() -> None:
    metrics = Metrics()
    inputs = Inputs(literals=[NamedLiteral(name="x")])
    call = metrics.rpc("CreateTask")
    call.received(pb.CreateTaskRequest(template=TaskTemplate(type="echo"), inputs=inputs))
    call.finished(Status.OK)
    assert value(metrics, "flyte_connector_input_literal_bytes_count", task_type="echo") == 1
    assert value(metrics, "flyte_connector_input_literal_bytes_sum", task_type="echo") == len(
        bytes(inputs)
    )
    assert value(
        metrics, "flyte_connector_requests_success_total", task_type="echo", operation="create"
    )


@pytest.mark.parametrize("method", ["ListConnectors", "GetConnector", "Unknown"])
def test_metadata_calls_are_not_measured(method: str) -> None:
    metrics = Metrics()
    call = metrics.rpc(method)
    call.received(None)
    call.finished(Status.OK)
    names = {s.name for m in metrics.registry.collect() for s in m.samples}
    assert not any(name.startswith("flyte_connector_requests_success") for name in names)


def test_every_measured_operation_uses_flytes_operation_names() -> None:
    assert set(OPERATIONS.values()) >= {"create", "get", "delete"}


def test_task_types_beyond_the_cap_are_counted_as_other() -> None:
    metrics = Metrics()
    for n in range(MAX_TASK_TYPES * len(OPERATIONS) + 10):
        call = metrics.rpc("GetTask")
        call.received(pb.GetTaskRequest(task_category=pb.TaskCategory(name=f"t{n}")))
        call.finished(Status.OK)
    other = value(
        metrics, "flyte_connector_requests_success_total", task_type="other", operation="get"
    )
    assert other == 10


# -- the supervisor's own: polls, lag, calls in flight (MockClock) ------------------------------


class _NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def _create(name: str) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="fake"),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(task_id=Identifier(name=name))
        ),
    )


@asynccontextmanager
async def measured(
    service: FakeService, metrics: Metrics, **options: Any
) -> AsyncIterator[Supervisor]:
    registry = ConnectorRegistry([FakeConnector(service, **options)])
    sup = Supervisor(
        registry,
        InMemoryJournal(),
        wall_clock=trio.current_time,
        rng=_NoJitter(),
        metrics=metrics,
    )
    async with sup.running():
        yield sup


async def test_polls_are_counted_once_each(autojump_clock: Any) -> None:
    metrics = Metrics()
    async with measured(FakeService(), metrics, poll_interval=10.0) as sup:
        await sup.create_task(_create("a"))
        await trio.sleep(35)  # polls at 10, 20 and 30 s
    assert value(metrics, "supervisor_polls_total", connector=FAKE) == 3
    assert value(metrics, "supervisor_poll_errors_total", connector=FAKE) == 0
    assert value(metrics, "supervisor_poll_lag_seconds_count", connector=FAKE) == 3
    assert value(metrics, "supervisor_poll_lag_seconds_sum", connector=FAKE) == 0
    calls = "supervisor_external_calls_total"
    assert value(metrics, calls, connector=FAKE, operation="create") == 1
    assert value(metrics, calls, connector=FAKE, operation="get") == 3
    assert value(metrics, calls, connector=FAKE, operation="delete") == 0


async def test_a_failed_poll_counts_as_a_poll_error(autojump_clock: Any) -> None:
    service = FakeService()
    metrics = Metrics()
    async with measured(service, metrics, poll_interval=10.0) as sup:
        await sup.create_task(_create("a"))
        service.fail_next("get")
        await trio.sleep(15)
    assert value(metrics, "supervisor_polls_total", connector=FAKE) == 1
    assert value(metrics, "supervisor_poll_errors_total", connector=FAKE) == 1


async def test_polls_held_back_by_the_concurrency_cap_show_as_lag(autojump_clock: Any) -> None:
    service = FakeService()
    metrics = Metrics()
    async with measured(service, metrics, poll_interval=10.0, max_concurrent_calls=1) as sup:
        await sup.create_task(_create("a"))
        await sup.create_task(_create("b"))
        service.latency = 1.0  # from now on every call takes 1 s, one call at a time
        await trio.sleep(15)  # both jobs are due at 10 s: the second poll starts at 11 s
    assert value(metrics, "supervisor_poll_lag_seconds_count", connector=FAKE) == 2
    assert value(metrics, "supervisor_poll_lag_seconds_sum", connector=FAKE) == 1.0


async def test_external_calls_in_flight_are_gauged(autojump_clock: Any) -> None:
    service = FakeService()
    metrics = Metrics()
    in_flight = "supervisor_external_calls_in_flight"
    async with measured(service, metrics, poll_interval=10.0, call_timeout=30.0) as sup:
        await sup.create_task(_create("a"))
        assert value(metrics, in_flight, connector=FAKE) == 0
        service.hang_next("get")
        await trio.sleep(11)  # the poll at 10 s hangs
        assert value(metrics, in_flight, connector=FAKE) == 1
        await trio.sleep(30)  # cut off by call_timeout: a poll error
        assert value(metrics, in_flight, connector=FAKE) == 0
    assert value(metrics, "supervisor_poll_errors_total", connector=FAKE) == 1


async def test_live_actors_are_reported_by_connector_and_phase(autojump_clock: Any) -> None:
    service = FakeService()
    metrics = Metrics()
    async with measured(service, metrics, poll_interval=10.0) as sup:
        metrics.watch(sup)
        meta = (await sup.create_task(_create("a"))).resource_meta
        assert value(metrics, "supervisor_live_actors", connector=FAKE, phase="QUEUED") == 1
        service.set_state(meta_job_id(meta), "RUNNING")
        await trio.sleep(11)
        assert value(metrics, "supervisor_live_actors", connector=FAKE, phase="RUNNING") == 1
        assert value(metrics, "supervisor_live_actors", connector=FAKE, phase="QUEUED") == 0
        assert value(metrics, "supervisor_oldest_live_job_age_seconds", connector=FAKE)
        service.set_state(meta_job_id(meta), "DONE")
        await trio.sleep(10)
        assert value(metrics, "supervisor_live_actors", connector=FAKE, phase="RUNNING") == 0
        assert value(metrics, "supervisor_jobs_resumed") == 0


def meta_job_id(meta: bytes) -> str:
    import json

    job_id: str = json.loads(meta)["job_id"]
    return job_id


# -- journal: commit hook and backlog --------------------------------------------------------


def _record(job_id: str) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        task_type="fake",
        task_type_version=0,
        connector=FAKE,
        attempt=0,
        create_state=CreateState.CREATED,
        delete_state=DeleteState.NONE,
        phase=2,
        created_at=1.0,
        updated_at=1.0,
    )


async def test_each_journal_commit_is_measured(tmp_path: Path) -> None:
    metrics = Metrics()
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    async with Journal.open(url, on_commit=metrics.journal_committed) as journal:
        await journal.write(Put(_record("a"), "x"), Put(_record("b"), "x"))
        await journal.write(Put(_record("c"), "x"))
        stats = journal.statistics()
    assert value(metrics, "supervisor_journal_batch_size_count") == stats.batches_committed
    assert value(metrics, "supervisor_journal_batch_size_sum") == 3
    assert value(metrics, "supervisor_journal_commit_seconds_count") == stats.batches_committed


@dataclasses.dataclass
class _Source:
    resumed: int = 2
    records: list[JobRecord] = dataclasses.field(default_factory=list)

    def live_records(self) -> list[JobRecord]:
        return self.records

    def replica_statistics(self) -> ReplicaStatistics | None:
        return ReplicaStatistics(owned=5, takeovers=4, self_fenced=1, heartbeat_age=0.5)


@dataclasses.dataclass
class _Journal:
    pending: int = 7

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            batches_committed=1,
            puts_committed=1,
            batches_failed=3,
            last_batch_size=1,
            last_commit_seconds=0.1,
            max_batch_size=1,
            pending_puts=self.pending,
            puts_fenced=6,
        )


def test_the_journal_backlog_and_resumed_jobs_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    metrics.watch(_Source(), _Journal())
    assert value(metrics, "supervisor_journal_pending_puts") == 7
    assert value(metrics, "supervisor_journal_failed_batches_total") == 3
    assert value(metrics, "supervisor_jobs_resumed") == 2


def test_the_replicas_figures_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    metrics.watch(_Source(), _Journal())
    assert value(metrics, "supervisor_jobs_owned") == 5
    assert value(metrics, "supervisor_takeovers_total") == 4
    assert value(metrics, "supervisor_self_fenced_total") == 1
    assert value(metrics, "supervisor_heartbeat_age_seconds") == 0.5
    assert value(metrics, "supervisor_fenced_writes_total") == 6


# -- the endpoint --------------------------------------------------------------------------


@pytest.fixture
def metrics_server() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics()
    server = MetricsServer.start(metrics, "127.0.0.1", 0)
    try:
        yield metrics, server
    finally:
        server.stop()


def test_the_endpoint_serves_the_registry(
    metrics_server: tuple[Metrics, MetricsServer],
) -> None:
    metrics, server = metrics_server
    metrics.rpc("GetTask").finished(Status.OK)
    samples = scrape(f"http://127.0.0.1:{server.port}/metrics")
    assert sample(samples, "flyte_connector_requests_success_total", task_type="", operation="get")
    assert any(name.startswith("process_") for name, _ in samples)


def test_a_stopped_endpoint_frees_its_port() -> None:
    server = MetricsServer.start(Metrics(), "127.0.0.1", 0)
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


# -- a real server ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_running_server_exports_flyte_and_supervisor_metrics(tmp_path: Path) -> None:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            api = stub(channel)
            echo = api.CreateTask(create_request("echo"), timeout=CALL_TIMEOUT)
            api.GetTask(_official_get("echo", echo.resource_meta), timeout=CALL_TIMEOUT)
            api.CreateTask(create_request("plain", job_id="p1"), timeout=CALL_TIMEOUT)
            with pytest.raises(grpc.RpcError):
                api.GetTask(_official_get("nope", b"{}"), timeout=CALL_TIMEOUT)
            with pytest.raises(grpc.RpcError):
                api.CreateTask(create_request("broken"), timeout=CALL_TIMEOUT)
        samples = scrape(server.metrics_url)
    success = "flyte_connector_requests_success_total"
    failure = "flyte_connector_requests_failure_total"
    assert sample(samples, success, task_type="echo", operation="create") == 1
    assert sample(samples, success, task_type="echo", operation="get") == 1
    assert sample(samples, failure, task_type="nope", operation="get", error_code="404") == 1
    assert sample(samples, failure, task_type="broken", operation="create", error_code="500") == 1
    assert sample(samples, "flyte_connector_input_literal_bytes_count", task_type="echo") == 1
    live = sample(samples, "supervisor_live_actors", connector="Plain connector", phase="QUEUED")
    assert live == 1
    assert sample(samples, "supervisor_journal_commit_seconds_count")
    assert sample(samples, "supervisor_jobs_resumed") == 0


@pytest.mark.slow
def test_jobs_resumed_after_a_crash_are_reported(tmp_path: Path) -> None:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            stub(channel).CreateTask(create_request("plain", job_id="p1"), timeout=CALL_TIMEOUT)
        server.kill()
        server.start()
        samples = scrape(server.metrics_url)
        server.send_signal(signal.SIGTERM)
        assert server.wait(CALL_TIMEOUT) == 0
    assert sample(samples, "supervisor_jobs_resumed") == 1
    live = [
        value
        for (name, labels), value in samples.items()
        if name == "supervisor_live_actors" and ("connector", "Plain connector") in labels
    ]
    assert sum(live) == 1


@pytest.mark.slow
def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path, env={"SUPERVISOR_METRICS_PORT": "off"}) as s:
        s.start()
        assert "metrics on" not in s.stdout_text()
        with pytest.raises(RuntimeError, match="serves no metrics"):
            _ = s.metrics_url


def _official_get(task_type: str, meta: bytes) -> Any:
    from flyteidl2.connector import connector_pb2

    return connector_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=meta)
