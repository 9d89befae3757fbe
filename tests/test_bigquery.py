"""The BigQuery connector against bqemulator, with the real google-cloud-bigquery client.

A proxy in front of the emulator (``tests/support/bigquery/proxy.py``) adds what the emulator lacks:
a RUNNING state (``/*sleep=S*/`` in the SQL), a real cancel, and 409 on a repeated job id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials

from connectors import JobNotFound, PermanentError, Phase, StructuredDatasetRef
from connectors.bigquery import (
    CREDENTIALS_SECRET,
    EMULATOR_HOST_ENV,
    BigQueryConnector,
    BigQueryJob,
)
from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import (
    LiteralType,
    SimpleType,
    Sql,
    TaskTemplate,
    TypedInterface,
    Variable,
    VariableEntry,
    VariableMap,
)
from flyteproto.google.protobuf import Struct
from tests.support.bigquery.emulator import PROJECT, SHORT_RETRY, Emulator, emulator_job
from tests.support.bigquery.polling import wait_for_phase
from tests.support.bigquery.proxy import BigQueryProxy

pytest_plugins = ["tests.support.bigquery.fixtures"]


def template(
    sql: str,
    *,
    inputs: Mapping[str, LiteralType] | None = None,
    config: Mapping[str, Any] | None = None,
) -> TaskTemplate:
    """A template as Flyte's BigQuery plugin writes one, with ``config`` in its custom."""
    custom = {"ProjectID": PROJECT, "Location": "US", "Domain": "development", **(config or {})}
    variables = [
        VariableEntry(key=name, value=Variable(type=literal_type))
        for name, literal_type in (inputs or {}).items()
    ]
    return TaskTemplate(
        type="bigquery_query_job_task",
        sql=Sql(statement=sql),
        custom=Struct.from_dict(custom),
        interface=TypedInterface(inputs=VariableMap(variables=variables)),
    )


def new_key() -> str:
    return uuid.uuid4().hex


async def create(
    connector: BigQueryConnector, sql: str, *, key: str | None = None, **kwargs: Any
) -> BigQueryJob:
    return await connector.create(
        template(sql), "gs://bucket/out", idempotency_key=key or new_key(), **kwargs
    )


# Success and failure ------------------------------------------------------------------


async def test_query_succeeds_with_destination_table_and_console_link(
    bigquery_connector: BigQueryConnector, bigquery_emulator: Emulator
) -> None:
    key = new_key()
    job = await create(bigquery_connector, "SELECT 1 AS one", key=key)
    assert job == BigQueryJob(job_id=f"flyte_{key}", project=PROJECT, location="US")

    resource = await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED, Phase.FAILED)

    assert resource.phase == Phase.SUCCEEDED, resource.message
    table = emulator_job(bigquery_emulator.url, job.job_id).destination
    uri = f"bq://{PROJECT}:{table.dataset_id}.{table.table_id}"
    assert resource.outputs == {"results": StructuredDatasetRef(uri=uri)}
    [link] = resource.log_links
    assert link.name == "BigQuery Console"
    assert link.uri == (
        "https://console.cloud.google.com/bigquery"
        f"?project={PROJECT}&j=bq:US:{job.job_id}&page=queryresults"
    )


async def test_failed_query_is_failed_with_bigquerys_reason(
    bigquery_connector: BigQueryConnector,
) -> None:
    job = await create(bigquery_connector, "SELECT x FROM no_such_table")

    resource = await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED, Phase.FAILED)

    assert resource.phase == Phase.FAILED
    assert resource.message.startswith("BigQuery job failed: notFound: ")
    assert "no_such_table" in resource.message
    assert resource.outputs is None
    assert [link.name for link in resource.log_links] == ["BigQuery Console"]


async def test_inputs_become_typed_query_parameters(
    bigquery_connector: BigQueryConnector,
    bigquery_proxy: BigQueryProxy,
    bigquery_emulator: Emulator,
) -> None:
    sql = (
        "SELECT @n + 1 AS n, @ratio * 2 AS ratio, CONCAT(@name, '!') AS name, NOT @flag AS flag,"
        " @at AS at, ARRAY_LENGTH(@names) AS name_count, ARRAY_LENGTH(@none) AS none_count"
    )
    inputs = {
        "n": 41,
        "ratio": 0.25,
        "name": "flyte",
        "flag": False,
        "at": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
        "names": ["a", "b", "c"],
        "none": [],
    }
    declared = {"none": LiteralType(collection_type=LiteralType(simple=SimpleType.INTEGER))}
    job = await bigquery_connector.create(
        template(sql, inputs=declared), "gs://out", inputs, idempotency_key=new_key()
    )

    resource = await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED, Phase.FAILED)

    assert resource.phase == Phase.SUCCEEDED, resource.message
    [row] = emulator_job(bigquery_emulator.url, job.job_id).result(retry=SHORT_RETRY, timeout=10)
    assert dict(row) == {
        "n": 42,
        "ratio": 0.5,
        "name": "flyte!",
        "flag": True,
        "at": inputs["at"],
        "name_count": 3,
        "none_count": 0,
    }
    sent = bigquery_proxy.inserted[job.job_id]["configuration"]["query"]["queryParameters"]
    types = {p["name"]: p["parameterType"] for p in sent}
    assert types == {
        "n": {"type": "INT64"},
        "ratio": {"type": "FLOAT64"},
        "name": {"type": "STRING"},
        "flag": {"type": "BOOL"},
        "at": {"type": "TIMESTAMP"},
        "names": {"type": "ARRAY", "arrayType": {"type": "STRING"}},
        "none": {"type": "ARRAY", "arrayType": {"type": "INT64"}},
    }


async def test_query_job_config_from_custom_is_sent_to_bigquery(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    destination = {"projectId": PROJECT, "datasetId": "flyte", "tableId": "daily"}
    config = {
        "destinationTable": destination,
        "writeDisposition": "WRITE_TRUNCATE",
        "useQueryCache": False,
        "maximumBytesBilled": "1000000000",
        "maximumBillingTier": 1,  # a Struct number: 1.0 on the wire, an int again for BigQuery
        "priority": "BATCH",
        "secrets": {CREDENTIALS_SECRET: "bigquery-service-account"},
    }
    metadata = TaskExecutionMetadata(labels={"team": "data", "Bad Key": "x", "domain": "dev"})
    job = await bigquery_connector.create(
        template("SELECT 1 AS one", config=config),
        "gs://out",
        task_execution_metadata=metadata,
        idempotency_key=new_key(),
    )

    sent = bigquery_proxy.inserted[job.job_id]["configuration"]
    assert sent["query"] == {
        "query": "SELECT 1 AS one",
        "destinationTable": destination,
        "writeDisposition": "WRITE_TRUNCATE",
        "useQueryCache": False,
        "maximumBytesBilled": "1000000000",
        "maximumBillingTier": 1,
        "priority": "BATCH",
        "useLegacySql": False,
    }
    assert sent["labels"] == {"team": "data", "domain": "dev"}
    resource = await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED, Phase.FAILED)
    assert resource.outputs == {"results": StructuredDatasetRef(uri=f"bq://{PROJECT}:flyte.daily")}


# Exactly-once create ------------------------------------------------------------------


async def test_repeated_create_adopts_the_existing_job(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    key = new_key()
    first = await create(bigquery_connector, "SELECT 1 AS one", key=key)

    second = await create(bigquery_connector, "SELECT 1 AS one", key=key)

    assert second == first
    assert bigquery_proxy.insert_attempts[first.job_id] == 2  # the second one got 409
    assert list(bigquery_proxy.inserted) == [first.job_id]


async def test_concurrent_creates_with_one_key_make_one_job(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    key = new_key()
    made: list[BigQueryJob] = []

    async def create_one() -> None:
        made.append(await create(bigquery_connector, "SELECT 1 AS one", key=key))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(create_one)

    assert len(made) == 4
    assert all(job == made[0] for job in made)
    assert list(bigquery_proxy.inserted) == [made[0].job_id]


async def test_insert_whose_response_was_lost_is_retried_and_adopted(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    bigquery_proxy.lose_next_insert_response()

    job = await create(bigquery_connector, "SELECT 1 AS one")

    # The library retried the insert (503), met 409, and the connector adopted the job.
    assert bigquery_proxy.insert_attempts[job.job_id] == 2
    assert list(bigquery_proxy.inserted) == [job.job_id]
    resource = await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED, Phase.FAILED)
    assert resource.phase == Phase.SUCCEEDED


async def test_repeated_create_of_a_running_job_adopts_it(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    key = new_key()
    first = await create(bigquery_connector, "/*sleep=30*/ SELECT 1 AS one", key=key)

    second = await create(bigquery_connector, "/*sleep=30*/ SELECT 1 AS one", key=key)

    assert second == first
    assert list(bigquery_proxy.inserted) == [first.job_id]
    await bigquery_connector.delete(first)


# Running and cancelling -----------------------------------------------------------------


async def test_running_job_is_reported_running_until_it_is_done(
    bigquery_connector: BigQueryConnector,
) -> None:
    job = await create(bigquery_connector, "/*sleep=2*/ SELECT 1 AS one")

    running = await bigquery_connector.get(job)
    done = await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED, Phase.FAILED)

    assert running.phase == Phase.RUNNING
    assert [link.name for link in running.log_links] == ["BigQuery Console"]
    assert running.outputs is None
    assert done.phase == Phase.SUCCEEDED, done.message


async def test_delete_cancels_a_running_job(
    bigquery_connector: BigQueryConnector,
    bigquery_proxy: BigQueryProxy,
    bigquery_emulator: Emulator,
) -> None:
    job = await create(bigquery_connector, "/*sleep=60*/ SELECT 1 AS one")
    assert (await bigquery_connector.get(job)).phase == Phase.RUNNING

    await bigquery_connector.delete(job)

    resource = await bigquery_connector.get(job)
    assert resource.phase == Phase.FAILED
    assert resource.message.startswith("BigQuery job failed: stopped: ")
    # The query never ran: the emulator never saw the job.
    with pytest.raises(api_exceptions.NotFound):
        emulator_job(bigquery_emulator.url, job.job_id)


async def test_delete_of_a_finished_job_is_fine(bigquery_connector: BigQueryConnector) -> None:
    job = await create(bigquery_connector, "SELECT 1 AS one")
    await wait_for_phase(bigquery_connector, job, Phase.SUCCEEDED)

    await bigquery_connector.delete(job)

    assert (await bigquery_connector.get(job)).phase == Phase.SUCCEEDED


async def test_delete_of_an_unknown_job_counts_as_deleted(
    bigquery_connector: BigQueryConnector,
) -> None:
    unknown = BigQueryJob(job_id=f"flyte_{new_key()}", project=PROJECT, location="US")

    with pytest.raises(JobNotFound):
        await bigquery_connector.delete(unknown)


async def test_get_of_an_unknown_job_raises_job_not_found(
    bigquery_connector: BigQueryConnector,
) -> None:
    unknown = BigQueryJob(job_id=f"flyte_{new_key()}", project=PROJECT, location="US")

    with pytest.raises(JobNotFound):
        await bigquery_connector.get(unknown)


# Failing fast ---------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (into its backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def unreachable_connector(port: int) -> BigQueryConnector:
    return BigQueryConnector(
        api_endpoint=f"http://127.0.0.1:{port}",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        retry_deadline=1.0,
        request_timeout=0.5,
    )


async def test_down_endpoint_fails_in_seconds(closed_port: int) -> None:
    connector = unreachable_connector(closed_port)
    job = BigQueryJob(job_id="flyte_x", project=PROJECT, location="US")
    for call in (lambda: create(connector, "SELECT 1"), lambda: connector.get(job)):
        started = time.monotonic()
        with pytest.raises(api_exceptions.RetryError, match="Connection refused"):
            await call()
        assert time.monotonic() - started < 5.0


async def test_hung_endpoint_times_out_in_seconds(silent_port: int) -> None:
    connector = unreachable_connector(silent_port)
    job = BigQueryJob(job_id="flyte_x", project=PROJECT, location="US")
    started = time.monotonic()

    with pytest.raises(api_exceptions.RetryError, match="timed out"):
        await connector.delete(job)

    assert time.monotonic() - started < 5.0


# Requests BigQuery refuses -------------------------------------------------------------


async def test_request_bigquery_refuses_is_a_permanent_error(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    bigquery_proxy.fail_next_insert(400, "invalid")

    with pytest.raises(PermanentError, match=r"BigQuery refused the query job: .*invalid"):
        await create(bigquery_connector, "SELECT 1")


async def test_quota_error_on_create_is_not_permanent(
    bigquery_connector: BigQueryConnector, bigquery_proxy: BigQueryProxy
) -> None:
    bigquery_proxy.fail_next_insert(403, "quotaExceeded")

    with pytest.raises(api_exceptions.Forbidden, match="quotaExceeded"):
        await create(bigquery_connector, "SELECT 1")


# Credentials ----------------------------------------------------------------------------


def service_account_key(token_uri: str) -> str:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "key-1",
            "private_key": pem.decode(),
            "client_email": f"flyte@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )


async def test_service_account_key_from_the_connection_secret_is_used(
    bigquery_proxy: BigQueryProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = service_account_key(token_uri=f"{bigquery_proxy.url}/token")
    connector = BigQueryConnector(api_endpoint=bigquery_proxy.url, retry_deadline=2.0)

    job = await create(connector, "SELECT 1 AS one", **{CREDENTIALS_SECRET: secret})
    resource = await wait_for_phase(connector, job, Phase.SUCCEEDED, **{CREDENTIALS_SECRET: secret})

    assert resource.phase == Phase.SUCCEEDED
    assert set(bigquery_proxy.authorizations) == {"Bearer proxy-token"}
    private_key = json.loads(secret)["private_key"]
    assert not [r for r in caplog.records if private_key.splitlines()[1] in r.getMessage()]


async def test_malformed_service_account_key_is_a_permanent_error_that_does_not_repeat_it(
    bigquery_proxy: BigQueryProxy,
) -> None:
    connector = BigQueryConnector(api_endpoint=bigquery_proxy.url)
    secret = '{"type": "service_account", "private_key": "s3cr3t"}'

    with pytest.raises(PermanentError, match=CREDENTIALS_SECRET) as caught:
        await create(connector, "SELECT 1", **{CREDENTIALS_SECRET: secret})

    assert "s3cr3t" not in str(caught.value)
    assert bigquery_proxy.insert_attempts == {}


async def test_emulator_host_variable_means_anonymous_credentials_at_that_host(
    bigquery_proxy: BigQueryProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EMULATOR_HOST_ENV, bigquery_proxy.url.removeprefix("http://"))
    connector = BigQueryConnector()  # as the registry makes it

    job = await create(connector, "SELECT 1 AS one")

    assert list(bigquery_proxy.inserted) == [job.job_id]
    assert bigquery_proxy.authorizations == []
