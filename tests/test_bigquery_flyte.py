"""A task made by Flyte's own BigQuery plugin runs unchanged, directly and end to end.

The template is the one ``flyteplugins-bigquery`` serialises (recorded in
``tests/support/bigquery/flyte_bigquery_template.json``; serialised afresh where the plugin is
installed). End to end, the real server process runs the connector and the official
flyteidl2 grpcio client plays Propeller.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl2.connector import connector_pb2, service_pb2_grpc
from flyteidl2.core import (
    execution_pb2,
    identifier_pb2,
    literals_pb2,
    security_pb2,
    tasks_pb2,
)
from flyteidl2.task import common_pb2

from connectors import Phase, Resource, StructuredDatasetRef
from connectors.bigquery import BigQueryConnector, BigQueryJob
from flyteproto.flyteidl2.core import TaskTemplate
from tests.support.bigquery.emulator import PROJECT, SHORT_RETRY, Emulator, emulator_job
from tests.support.bigquery.flyte_template import load_recorded, serialize_with_flyte
from tests.support.bigquery.polling import PHASE_TIMEOUT, POLL_INTERVAL, wait_for_phase
from tests.support.bigquery.proxy import BigQueryProxy
from tests.support.server import ServerProcess

pytest_plugins = ["tests.support.bigquery.fixtures"]

#: The protobuf-runtime messages of the official package are untyped.
Message = Any

INPUTS = {"n": 41, "names": ["a", "b", "c"]}
#: Where the plugin's QueryJobConfig sends the results (tests/support/bigquery/flyte_template.py).
RESULTS_URI = f"bq://{PROJECT}:flyte.results"
#: Phases after which Propeller stops polling.
TERMINAL = {
    execution_pb2.TaskExecution.SUCCEEDED,
    execution_pb2.TaskExecution.FAILED,
    execution_pb2.TaskExecution.ABORTED,
    execution_pb2.TaskExecution.RETRYABLE_FAILED,
}
CATEGORY = connector_pb2.TaskCategory(name="bigquery_query_job_task", version=0)
CALL_TIMEOUT = 10.0


async def run_to_the_end(
    connector: BigQueryConnector, template: bytes
) -> tuple[BigQueryJob, Resource]:
    """Create a job from serialised template bytes (as Propeller sends them) and poll it."""
    job = await connector.create(
        TaskTemplate.parse(template), "gs://bucket/out", INPUTS, idempotency_key="0" * 32
    )
    resource = await wait_for_phase(connector, job, Phase.SUCCEEDED, Phase.FAILED)
    return job, resource


async def test_template_recorded_from_flytes_plugin_runs_unchanged(
    bigquery_connector: BigQueryConnector,
    bigquery_proxy: BigQueryProxy,
    bigquery_emulator: Emulator,
) -> None:
    recorded = load_recorded()
    assert recorded.plugin.startswith("flyteplugins-bigquery ")

    job, resource = await run_to_the_end(bigquery_connector, recorded.template)

    assert resource.phase == Phase.SUCCEEDED, resource.message
    assert resource.outputs == {"results": StructuredDatasetRef(uri=RESULTS_URI)}
    sent = bigquery_proxy.inserted[job.job_id]
    assert sent["jobReference"] == {"jobId": job.job_id, "projectId": PROJECT, "location": "US"}
    query = sent["configuration"]["query"]
    assert query["query"] == "SELECT @n + 1 AS n, ARRAY_LENGTH(@names) AS name_count"
    assert {k: v for k, v in query.items() if k not in ("query", "queryParameters")} == {
        "destinationTable": {"projectId": PROJECT, "datasetId": "flyte", "tableId": "results"},
        "writeDisposition": "WRITE_TRUNCATE",
        "useQueryCache": False,
        "maximumBytesBilled": "1000000000",
        "priority": "BATCH",
        "parameterMode": "NAMED",
        "useLegacySql": False,
    }
    [row] = emulator_job(bigquery_emulator.url, job.job_id).result(retry=SHORT_RETRY, timeout=10)
    assert dict(row) == {"n": 42, "name_count": 3}


async def test_template_serialised_now_by_flytes_plugin_runs_unchanged(
    bigquery_connector: BigQueryConnector,
) -> None:
    pytest.importorskip(
        "flyteplugins.bigquery",
        reason="flyteplugins-bigquery is not installed (its flyte 2.12.1 pins "
        "flyteidl2==2.0.51; this project's generated code is from 2.0.53): the recorded "
        "template stands in for it",
    )

    _, resource = await run_to_the_end(bigquery_connector, serialize_with_flyte())

    assert resource.phase == Phase.SUCCEEDED, resource.message
    assert resource.outputs == {"results": StructuredDatasetRef(uri=RESULTS_URI)}


# End to end: the server process and the official grpcio client ---------------------------


@pytest.fixture
def stub(bigquery_proxy: BigQueryProxy, tmp_path: Path) -> Iterator[Any]:
    """The AsyncConnectorService of a server that runs ``tests.support.bigquery.served``."""
    server = ServerProcess(
        ["--entry-points", "false", "--modules", "tests.support.bigquery.served"],
        env={"BIGQUERY_EMULATOR_HOST": bigquery_proxy.url},
        log_dir=tmp_path,
    )
    with server.start(), grpc.insecure_channel(server.address) as channel:
        yield service_pb2_grpc.AsyncConnectorServiceStub(channel)


def create_request(template: Message, name: str) -> Message:
    literals = [
        common_pb2.NamedLiteral(
            name="n", value=_literal(primitive=literals_pb2.Primitive(integer=41))
        ),
        common_pb2.NamedLiteral(
            name="names",
            value=literals_pb2.Literal(
                collection=literals_pb2.LiteralCollection(
                    literals=[
                        _literal(primitive=literals_pb2.Primitive(string_value=s)) for s in "abc"
                    ]
                )
            ),
        ),
    ]
    execution = identifier_pb2.TaskExecutionIdentifier(
        task_id=identifier_pb2.Identifier(project="flytesnacks", domain="development", name=name),
        retry_attempt=0,
    )
    return connector_pb2.CreateTaskRequest(
        inputs=common_pb2.Inputs(literals=literals),
        template=template,
        output_prefix="gs://bucket/out",
        task_execution_metadata=connector_pb2.TaskExecutionMetadata(task_execution_id=execution),
        connection=security_pb2.Connection(),
    )


def _literal(**scalar: Any) -> Message:
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(**scalar))


def wait_for_task(stub: Any, meta: bytes, done: Callable[[Message], bool]) -> Message:
    """Poll GetTask (as Propeller does, only faster) until ``done(resource)``."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    request = connector_pb2.GetTaskRequest(task_category=CATEGORY, resource_meta=meta)
    while True:
        resource = stub.GetTask(request, timeout=CALL_TIMEOUT).resource
        if done(resource) or time.monotonic() > deadline:
            return resource
        time.sleep(POLL_INTERVAL)


@pytest.mark.slow
def test_flyte_task_end_to_end_through_the_server(stub: Any, bigquery_proxy: BigQueryProxy) -> None:
    template = tasks_pb2.TaskTemplate.FromString(load_recorded().template)
    request = create_request(template, name="count_names")

    meta = stub.CreateTask(request, timeout=CALL_TIMEOUT).resource_meta
    again = stub.CreateTask(request, timeout=CALL_TIMEOUT).resource_meta
    resource = wait_for_task(stub, meta, lambda r: r.phase in TERMINAL)

    assert again == meta
    assert resource.phase == execution_pb2.TaskExecution.SUCCEEDED, resource.message
    [output] = resource.outputs.literals
    assert output.name == "results"
    assert output.value.scalar.structured_dataset.uri == RESULTS_URI
    assert [link.name for link in resource.log_links] == ["BigQuery Console"]
    # One job, inserted once: the supervisor answered the second CreateTask itself.
    [job_id] = bigquery_proxy.inserted
    assert bigquery_proxy.insert_attempts == {job_id: 1}


@pytest.mark.slow
def test_abort_end_to_end_cancels_the_running_job(stub: Any, bigquery_proxy: BigQueryProxy) -> None:
    template = tasks_pb2.TaskTemplate(type="bigquery_query_job_task")
    template.sql.statement = "/*sleep=60*/ SELECT @n AS n"
    template.custom.update({"ProjectID": PROJECT, "Location": "US"})
    meta = stub.CreateTask(
        create_request(template, name="sleepy"), timeout=CALL_TIMEOUT
    ).resource_meta
    running = wait_for_task(stub, meta, lambda r: r.phase == execution_pb2.TaskExecution.RUNNING)
    assert running.phase == execution_pb2.TaskExecution.RUNNING

    stub.DeleteTask(
        connector_pb2.DeleteTaskRequest(task_category=CATEGORY, resource_meta=meta),
        timeout=CALL_TIMEOUT,
    )
    aborted = wait_for_task(stub, meta, lambda r: r.phase == execution_pb2.TaskExecution.ABORTED)

    assert aborted.phase == execution_pb2.TaskExecution.ABORTED
    [job_id] = bigquery_proxy.inserted
    assert job_id in bigquery_proxy.held_job_ids()  # cancelled while the proxy held it
    assert proxy_get(bigquery_proxy, job_id)["status"]["errorResult"]["reason"] == "stopped"


def proxy_get(proxy: BigQueryProxy, job_id: str) -> dict[str, Any]:
    """The job as the proxy reports it to any client."""
    url = f"{proxy.url}/bigquery/v2/projects/{PROJECT}/jobs/{job_id}"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer
