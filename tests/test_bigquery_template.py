"""The BigQuery connector's pure parts: template fields, query parameters, phases, handle.

No emulator here: these run wherever google-cloud-bigquery is installed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from types import ModuleType
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

import connectors.bigquery
from connectors import ConnectorRegistry, PermanentError, Phase, StructuredDatasetRef
from connectors.bigquery import (
    RETRYABLE_REASONS,
    BigQueryConnector,
    BigQueryJob,
    QuerySpec,
    query_parameters,
)
from connectors.bigquery._status import resource_for
from flyteproto.flyteidl2.core import (
    EnumType,
    LiteralType,
    SimpleType,
    Sql,
    TaskTemplate,
    TypedInterface,
    UnionType,
    Variable,
    VariableEntry,
    VariableMap,
)
from flyteproto.google.protobuf import Struct

PROJECT = "test-project"


def template_with(custom: dict[str, Any] | None, sql: str | None = "SELECT 1") -> TaskTemplate:
    return TaskTemplate(
        type="bigquery_query_job_task",
        sql=Sql(statement=sql) if sql is not None else None,
        custom=Struct.from_dict(custom) if custom is not None else None,
    )


def interface(**types: LiteralType) -> TypedInterface:
    entries = [VariableEntry(key=k, value=Variable(type=t)) for k, t in types.items()]
    return TypedInterface(inputs=VariableMap(variables=entries))


def simple(kind: SimpleType) -> LiteralType:
    return LiteralType(simple=kind)


def api_repr(parameters: list[Any]) -> dict[str, Any]:
    return {p.name: p.to_api_repr() for p in parameters}


# The template -------------------------------------------------------------------------


def test_custom_as_flytes_plugin_writes_it_is_read() -> None:
    custom = {
        "ProjectID": PROJECT,
        "Location": "EU",
        "Domain": "production",
        "secrets": {"google_application_credentials": "bigquery-sa"},
        "destinationTable": {"projectId": PROJECT, "datasetId": "d", "tableId": "t"},
        "writeDisposition": "WRITE_APPEND",
        "useQueryCache": False,
    }

    spec = QuerySpec.from_template(template_with(custom, "SELECT @n"))

    assert spec == QuerySpec(
        statement="SELECT @n",
        project=PROJECT,
        location="EU",
        domain="production",
        query_config={
            "destinationTable": {"projectId": PROJECT, "datasetId": "d", "tableId": "t"},
            "writeDisposition": "WRITE_APPEND",
            "useQueryCache": False,
        },
    )


def test_flyte_keys_are_read_case_insensitively_as_flytes_go_plugin_does() -> None:
    spec = QuerySpec.from_template(template_with({"projectId": PROJECT, "location": "US"}))

    assert (spec.project, spec.location, spec.query_config) == (PROJECT, "US", {})


def test_unset_location_and_project_are_none() -> None:
    spec = QuerySpec.from_template(template_with({"ProjectID": PROJECT, "Location": None}))

    assert (spec.project, spec.location) == (PROJECT, None)
    assert QuerySpec.from_template(template_with(None)).project is None


def test_struct_numbers_are_integers_again() -> None:
    custom = {"maximumBillingTier": 3, "rangePartitioning": {"range": {"interval": 2}}}

    spec = QuerySpec.from_template(template_with(custom))

    assert spec.query_config == custom
    assert isinstance(spec.query_config["maximumBillingTier"], int)


def test_sql_in_custom_query_is_used_when_the_template_has_none() -> None:
    spec = QuerySpec.from_template(template_with({"query": "SELECT 2"}, sql=None))

    assert (spec.statement, spec.query_config) == ("SELECT 2", {})


def test_template_without_sql_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="no SQL statement"):
        QuerySpec.from_template(template_with({"ProjectID": PROJECT}, sql="  "))


def test_inputs_replace_config_parameters_of_the_same_name() -> None:
    own = [
        bigquery.ScalarQueryParameter("n", "INT64", 1).to_api_repr(),
        bigquery.ScalarQueryParameter("kept", "STRING", "x").to_api_repr(),
    ]
    spec = QuerySpec.from_template(template_with({"queryParameters": own}))

    config = spec.job_config(query_parameters({"n": 2}), labels={"team": "flyte"})

    assert [p.to_api_repr() for p in config.query_parameters] == [
        own[1],
        bigquery.ScalarQueryParameter("n", "INT64", 2).to_api_repr(),
    ]
    assert config.labels == {"team": "flyte"}
    assert spec.query_config["queryParameters"] == own  # the spec is left as it was


# Query parameters ---------------------------------------------------------------------


def test_parameter_types_come_from_the_values() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    inputs = {
        "i": 1,
        "f": 1.5,
        "s": "x",
        "b": True,
        "ts": when,
        "local": when.replace(tzinfo=None),
        "day": when.date(),
        "raw": b"\x00",
        "amount": decimal.Decimal("1.25"),
        "doc": {"a": 1},
        "names": ["a", "b"],
    }

    types = {p.name: p.to_api_repr()["parameterType"] for p in query_parameters(inputs)}

    assert types == {
        "i": {"type": "INT64"},
        "f": {"type": "FLOAT64"},
        "s": {"type": "STRING"},
        "b": {"type": "BOOL"},
        "ts": {"type": "TIMESTAMP"},
        "local": {"type": "DATETIME"},
        "day": {"type": "DATE"},
        "raw": {"type": "BYTES"},
        "amount": {"type": "NUMERIC"},
        "doc": {"type": "JSON"},
        "names": {"type": "ARRAY", "arrayType": {"type": "STRING"}},
    }


def test_declared_types_win_and_type_empty_lists_and_nones() -> None:
    declared = interface(
        ratio=simple(SimpleType.FLOAT),
        ids=LiteralType(collection_type=simple(SimpleType.INTEGER)),
        maybe=LiteralType(
            union_type=UnionType(variants=[simple(SimpleType.NONE), simple(SimpleType.INTEGER)])
        ),
        color=LiteralType(enum_type=EnumType(values=["red"])),
    )
    inputs = {"ratio": 2, "ids": [], "maybe": None, "color": "red"}

    parameters = api_repr(query_parameters(inputs, declared))

    assert parameters == {
        "ratio": {
            "name": "ratio",
            "parameterType": {"type": "FLOAT64"},
            "parameterValue": {"value": 2.0},
        },
        "ids": {
            "name": "ids",
            "parameterType": {"type": "ARRAY", "arrayType": {"type": "INT64"}},
            "parameterValue": {"arrayValues": []},
        },
        "maybe": {
            "name": "maybe",
            "parameterType": {"type": "INT64"},
            "parameterValue": {"value": None},
        },
        "color": {
            "name": "color",
            "parameterType": {"type": "STRING"},
            "parameterValue": {"value": "red"},
        },
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (dt.timedelta(seconds=1), "a timedelta cannot be"),
        (StructuredDatasetRef(uri="bq://p:d.t"), "a StructuredDatasetRef cannot be"),
        ([1, "a"], "list mixes INT64, STRING"),
        ([[1]], "a list cannot be"),
    ],
)
def test_inputs_without_a_parameter_form_are_permanent_errors(value: Any, problem: str) -> None:
    with pytest.raises(PermanentError, match=f"input 'x': {problem}"):
        query_parameters({"x": value})


# Phases -------------------------------------------------------------------------------


def job_from(status: dict[str, Any], **query: Any) -> bigquery.QueryJob:
    client = bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    resource = {
        "jobReference": {"projectId": PROJECT, "jobId": "flyte_1", "location": "US"},
        "configuration": {"query": {"query": "SELECT 1", **query}},
        "status": status,
        "statistics": {"query": {"totalBytesProcessed": "10", "totalBytesBilled": "0"}},
    }
    return bigquery.QueryJob.from_api_repr(resource, client)


META = BigQueryJob(job_id="flyte_1", project=PROJECT, location="US")


@pytest.mark.parametrize(
    ("state", "phase"),
    [("PENDING", Phase.INITIALIZING), ("RUNNING", Phase.RUNNING), ("DONE", Phase.SUCCEEDED)],
)
def test_bigquery_states_map_to_phases(state: str, phase: Phase) -> None:
    resource = resource_for(META, job_from({"state": state}))

    assert (resource.phase, resource.message) == (phase, "")


def test_unknown_state_is_running_with_a_message() -> None:
    resource = resource_for(META, job_from({"state": "PAUSED"}))

    assert resource.phase == Phase.RUNNING
    assert "unknown BigQuery state 'PAUSED'" in resource.message


def test_transient_failure_reasons_are_retryable_failures() -> None:
    error = {"reason": "backendError", "message": "try again"}

    resource = resource_for(META, job_from({"state": "DONE", "errorResult": error}))

    assert "backendError" in RETRYABLE_REASONS
    assert resource.phase == Phase.RETRYABLE_FAILED
    assert resource.message == "BigQuery job failed: backendError: try again"


def test_success_without_destination_has_no_outputs_but_statistics() -> None:
    resource = resource_for(META, job_from({"state": "DONE"}))

    assert resource.outputs is None
    assert resource.custom_info == {"total_bytes_processed": 10, "total_bytes_billed": 0}


# The handle and the registration ----------------------------------------------------------


def test_resource_meta_of_flytes_own_connector_decodes() -> None:
    theirs = {"job_id": "abc", "project": PROJECT, "location": None, "user_agent": "Flyte/2.12.1"}

    meta = BigQueryJob.decode(json.dumps(theirs).encode())

    assert meta == BigQueryJob("abc", PROJECT, None, "Flyte/2.12.1")
    assert BigQueryJob.decode(META.encode()) == META


def test_module_registers_the_connector_for_flytes_task_type() -> None:
    registry = ConnectorRegistry()

    registry.load_module("connectors.bigquery")

    connector = registry.get("bigquery_query_job_task", 0)
    assert isinstance(connector, BigQueryConnector)
    assert connector.name == "Bigquery Connector"
    assert connector.supports_idempotent_create


def test_client_factory_and_api_endpoint_do_not_mix() -> None:
    with pytest.raises(TypeError, match="not both"):
        BigQueryConnector(api_endpoint="http://x", client_factory=lambda p, c: bigquery.Client())


def test_call_timeout_outlasts_the_librarys_retries_and_last_request() -> None:
    connector = BigQueryConnector(retry_deadline=3.0, request_timeout=4.0)

    assert connector.call_timeout > 3.0 + 4.0


def test_public_names_are_exported() -> None:
    module = connectors.bigquery
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(module.__all__)
