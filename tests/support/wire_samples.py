"""Connector messages built twice, once with the official flyteidl2 classes and once with ours.

Each `WireSample` holds the same content built independently on each side, so tests can
compare bytes and parsed messages across the two implementations.

Map fields: protobuf leaves the order of map entries open. The official side is meant to be
serialized with `deterministic=True`, which sorts entries by key; ours writes entries in
dict insertion order, so the builders here insert keys in sorted order (`Struct` fields
too). Keys are ASCII, so Python's sort order is the byte order the official side uses.

Times are microsecond-precise: ours maps Timestamp and Duration to datetime and timedelta.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import betterproto2
from flyteidl2.connector import connector_pb2
from flyteidl2.core import (
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    security_pb2,
    tasks_pb2,
    types_pb2,
)
from flyteidl2.logs.dataplane import payload_pb2
from flyteidl2.task import common_pb2
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from flyteproto.flyteidl2 import connector, core, task
from flyteproto.flyteidl2.logs import dataplane
from flyteproto.google.protobuf import ListValue, NullValue, Struct, Value

Official: TypeAlias = Any
"""A message from the official flyteidl2 package, which ships no type hints."""

JsonValue: TypeAlias = bool | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

Target: TypeAlias = Literal["sql", "container"]


@dataclass(frozen=True)
class WireSample:
    """The same message, built with the official classes and with ours."""

    official: Official
    ours: betterproto2.Message

    def official_bytes(self) -> bytes:
        """The official serialization, map entries sorted by key."""
        data: bytes = self.official.SerializeToString(deterministic=True)
        return data

    def official_parse(self, data: bytes) -> Official:
        """`data` parsed with the official class of this sample."""
        return type(self.official).FromString(data)

    def ours_parse(self, data: bytes) -> betterproto2.Message:
        """`data` parsed with our class of this sample."""
        return type(self.ours).parse(data)


# --- shared content -------------------------------------------------------------------------

PROJECT = "flytesnacks"
DOMAIN = "development"
ORG = "union"
TASK_TYPE = "bigquery_query_job_task"
OUTPUT_PREFIX = "s3://flyte-data/metadata/propeller/flytesnacks-development-abc123/n0/data/0"
SQL_STATEMENT = "SELECT * FROM `analytics.events` WHERE day = @day LIMIT @limit"
IMAGE = "ghcr.io/flyteorg/flytekit:py3.12-2.0.0"
START = dt.datetime(2024, 2, 29, 12, 34, 56, 789012, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=1, seconds=5, microseconds=123456)
TASK_TIMEOUT = dt.timedelta(hours=1, minutes=30, microseconds=250000)
LOG_TTL = dt.timedelta(hours=1, microseconds=500000)

TASK_TAGS = {"team": "data", "tier": "gold"}
TEMPLATE_CONFIG = {"priority": "high", "project": "gcp-analytics"}
LABELS = {"app": "flyte", "execution-id": "abc123", "team": "data"}
ANNOTATIONS = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false", "empty": ""}
ENVIRONMENT = {"FLYTE_INTERNAL_EXECUTION_ID": "abc123", "PYTHONUNBUFFERED": "1"}
CONNECTION_SECRETS = {"google_application_credentials": "{...}", "token": "s3cr3t"}
CONNECTION_CONFIGS = {"location": "EU", "timeout": "30s"}
LITERAL_METADATA = {"origin": "cache", "size": "8"}
OPTIONS = {"mode": "fast", "region": "europe-west1"}

CUSTOM: dict[str, JsonValue] = {
    "dataset": "analytics",
    "location": "EU",
    "limits": {"rows": 1000.0, "strict": True, "unset": None},
    "columns": ["id", 1.5, False, {"nested": "x"}, [], {}],
    "ratio": -0.125,
}
CONFIG_INPUT: dict[str, JsonValue] = {"retries": 3.0, "labels": ["a", "b"], "debug": None}
CUSTOM_INFO: dict[str, JsonValue] = {
    "job_id": "bqjob_r1234",
    "stats": {"bytes_processed": 123456789.0, "cache_hit": False},
}


# --- helpers --------------------------------------------------------------------------------


def _sorted(mapping: dict[str, str]) -> dict[str, str]:
    return {key: mapping[key] for key in sorted(mapping)}


def official_struct(data: dict[str, JsonValue]) -> Official:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def ours_value(value: JsonValue) -> Value:
    if value is None:
        return Value(null_value=NullValue.NULL_VALUE)
    if isinstance(value, bool):
        return Value(bool_value=value)
    if isinstance(value, float):
        return Value(number_value=value)
    if isinstance(value, str):
        return Value(string_value=value)
    if isinstance(value, list):
        return Value(list_value=ListValue(values=[ours_value(item) for item in value]))
    return Value(struct_value=ours_struct(value))


def ours_struct(data: dict[str, JsonValue]) -> Struct:
    return Struct(fields={key: ours_value(data[key]) for key in sorted(data)})


def official_timestamp(moment: dt.datetime) -> Official:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment)
    return timestamp


def official_duration(delta: dt.timedelta) -> Official:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(delta)
    return duration


# --- identifiers ----------------------------------------------------------------------------


def _official_task_id() -> Official:
    return identifier_pb2.Identifier(
        resource_type=identifier_pb2.TASK,
        project=PROJECT,
        domain=DOMAIN,
        name="workflows.bigquery.query",
        version="v1.2.3",
        org=ORG,
    )


def _ours_task_id() -> core.Identifier:
    return core.Identifier(
        resource_type=core.ResourceType.TASK,
        project=PROJECT,
        domain=DOMAIN,
        name="workflows.bigquery.query",
        version="v1.2.3",
        org=ORG,
    )


def _official_task_execution_id() -> Official:
    return identifier_pb2.TaskExecutionIdentifier(
        task_id=_official_task_id(),
        node_execution_id=identifier_pb2.NodeExecutionIdentifier(
            node_id="n0",
            execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                project=PROJECT, domain=DOMAIN, name="abc123", org=ORG
            ),
        ),
        retry_attempt=2,
    )


def _ours_task_execution_id() -> core.TaskExecutionIdentifier:
    return core.TaskExecutionIdentifier(
        task_id=_ours_task_id(),
        node_execution_id=core.NodeExecutionIdentifier(
            node_id="n0",
            execution_id=core.WorkflowExecutionIdentifier(
                project=PROJECT, domain=DOMAIN, name="abc123", org=ORG
            ),
        ),
        retry_attempt=2,
    )


# --- literals -------------------------------------------------------------------------------


def _official_primitive(**value: Any) -> Official:
    primitive = literals_pb2.Primitive(**value)
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=primitive))


def _ours_primitive(primitive: core.Primitive) -> core.Literal:
    return core.Literal(scalar=core.Scalar(primitive=primitive))


def _official_literals() -> list[Official]:
    """Named literals of every kind the connector sees, in the order of `_ours_literals`."""
    limit = _official_primitive(integer=1000)
    limit.hash = "sha256:limit"
    limit.metadata.update(LITERAL_METADATA)
    dataset_type = types_pb2.StructuredDatasetType(format="parquet")
    values = {
        "limit": limit,
        "offset": _official_primitive(integer=-42),
        "ratio": _official_primitive(float_value=0.25),
        "query": _official_primitive(string_value="naïve ☃ query"),
        "dry_run": _official_primitive(boolean=False),
        "start": _official_primitive(datetime=official_timestamp(START)),
        "window": _official_primitive(duration=official_duration(WINDOW)),
        "ids": literals_pb2.Literal(
            collection=literals_pb2.LiteralCollection(
                literals=[_official_primitive(integer=n) for n in (1, 2, 3)]
            )
        ),
        "options": literals_pb2.Literal(
            map=literals_pb2.LiteralMap(
                literals={k: _official_primitive(string_value=v) for k, v in OPTIONS.items()}
            )
        ),
        "config": literals_pb2.Literal(
            scalar=literals_pb2.Scalar(generic=official_struct(CONFIG_INPUT))
        ),
        "dataset": literals_pb2.Literal(
            scalar=literals_pb2.Scalar(
                structured_dataset=literals_pb2.StructuredDataset(
                    uri="gs://flyte-data/events.parquet",
                    metadata=literals_pb2.StructuredDatasetMetadata(
                        structured_dataset_type=dataset_type
                    ),
                )
            )
        ),
        "nothing": literals_pb2.Literal(scalar=literals_pb2.Scalar(none_type=literals_pb2.Void())),
    }
    return [common_pb2.NamedLiteral(name=name, value=value) for name, value in values.items()]


def _ours_literals() -> list[task.NamedLiteral]:
    limit = _ours_primitive(core.Primitive(integer=1000))
    limit.hash = "sha256:limit"
    limit.metadata = _sorted(LITERAL_METADATA)
    values = {
        "limit": limit,
        "offset": _ours_primitive(core.Primitive(integer=-42)),
        "ratio": _ours_primitive(core.Primitive(float_value=0.25)),
        "query": _ours_primitive(core.Primitive(string_value="naïve ☃ query")),
        "dry_run": _ours_primitive(core.Primitive(boolean=False)),
        "start": _ours_primitive(core.Primitive(datetime=START)),
        "window": _ours_primitive(core.Primitive(duration=WINDOW)),
        "ids": core.Literal(
            collection=core.LiteralCollection(
                literals=[_ours_primitive(core.Primitive(integer=n)) for n in (1, 2, 3)]
            )
        ),
        "options": core.Literal(
            map=core.LiteralMap(
                literals={
                    k: _ours_primitive(core.Primitive(string_value=v))
                    for k, v in _sorted(OPTIONS).items()
                }
            )
        ),
        "config": core.Literal(scalar=core.Scalar(generic=ours_struct(CONFIG_INPUT))),
        "dataset": core.Literal(
            scalar=core.Scalar(
                structured_dataset=core.StructuredDataset(
                    uri="gs://flyte-data/events.parquet",
                    metadata=core.StructuredDatasetMetadata(
                        structured_dataset_type=core.StructuredDatasetType(format="parquet")
                    ),
                )
            )
        ),
        "nothing": core.Literal(scalar=core.Scalar(none_type=core.Void())),
    }
    return [task.NamedLiteral(name=name, value=value) for name, value in values.items()]


def _official_outputs() -> Official:
    blob = literals_pb2.Blob(
        uri="s3://flyte-data/results/",
        metadata=literals_pb2.BlobMetadata(
            type=types_pb2.BlobType(format="csv", dimensionality=types_pb2.BlobType.MULTIPART)
        ),
    )
    return common_pb2.Outputs(
        literals=[
            common_pb2.NamedLiteral(
                name="results", value=literals_pb2.Literal(scalar=literals_pb2.Scalar(blob=blob))
            ),
            common_pb2.NamedLiteral(name="row_count", value=_official_primitive(integer=12345)),
        ]
    )


def _ours_outputs() -> task.Outputs:
    blob = core.Blob(
        uri="s3://flyte-data/results/",
        metadata=core.BlobMetadata(
            type=core.BlobType(
                format="csv", dimensionality=core.BlobTypeBlobDimensionality.MULTIPART
            )
        ),
    )
    return task.Outputs(
        literals=[
            task.NamedLiteral(name="results", value=core.Literal(scalar=core.Scalar(blob=blob))),
            task.NamedLiteral(
                name="row_count", value=_ours_primitive(core.Primitive(integer=12345))
            ),
        ]
    )


# --- interface ------------------------------------------------------------------------------


def _official_simple(name: str) -> Official:
    return types_pb2.LiteralType(simple=types_pb2.SimpleType.Value(name))


def _ours_simple(name: str) -> core.LiteralType:
    return core.LiteralType(simple=core.SimpleType[name])


def _official_input_types() -> dict[str, Official]:
    column = types_pb2.StructuredDatasetType.DatasetColumn(
        name="id", literal_type=_official_simple("INTEGER")
    )
    return {
        "limit": _official_simple("INTEGER"),
        "query": _official_simple("STRING"),
        "ratio": _official_simple("FLOAT"),
        "dry_run": _official_simple("BOOLEAN"),
        "start": _official_simple("DATETIME"),
        "window": _official_simple("DURATION"),
        "ids": types_pb2.LiteralType(collection_type=_official_simple("INTEGER")),
        "options": types_pb2.LiteralType(map_value_type=_official_simple("STRING")),
        "config": types_pb2.LiteralType(
            simple=types_pb2.STRUCT,
            metadata=official_struct({"title": "Config"}),
            annotation=types_pb2.TypeAnnotation(annotations=official_struct({"cache": True})),
        ),
        "dataset": types_pb2.LiteralType(
            structured_dataset_type=types_pb2.StructuredDatasetType(
                columns=[column], format="parquet"
            )
        ),
        "maybe": types_pb2.LiteralType(
            union_type=types_pb2.UnionType(
                variants=[
                    types_pb2.LiteralType(
                        simple=types_pb2.STRING, structure=types_pb2.TypeStructure(tag="str")
                    ),
                    types_pb2.LiteralType(
                        simple=types_pb2.NONE, structure=types_pb2.TypeStructure(tag="none")
                    ),
                ]
            )
        ),
        "nothing": _official_simple("NONE"),
    }


def _ours_input_types() -> dict[str, core.LiteralType]:
    column = core.StructuredDatasetTypeDatasetColumn(
        name="id", literal_type=_ours_simple("INTEGER")
    )
    return {
        "limit": _ours_simple("INTEGER"),
        "query": _ours_simple("STRING"),
        "ratio": _ours_simple("FLOAT"),
        "dry_run": _ours_simple("BOOLEAN"),
        "start": _ours_simple("DATETIME"),
        "window": _ours_simple("DURATION"),
        "ids": core.LiteralType(collection_type=_ours_simple("INTEGER")),
        "options": core.LiteralType(map_value_type=_ours_simple("STRING")),
        "config": core.LiteralType(
            simple=core.SimpleType.STRUCT,
            metadata=ours_struct({"title": "Config"}),
            annotation=core.TypeAnnotation(annotations=ours_struct({"cache": True})),
        ),
        "dataset": core.LiteralType(
            structured_dataset_type=core.StructuredDatasetType(columns=[column], format="parquet")
        ),
        "maybe": core.LiteralType(
            union_type=core.UnionType(
                variants=[
                    core.LiteralType(
                        simple=core.SimpleType.STRING, structure=core.TypeStructure(tag="str")
                    ),
                    core.LiteralType(
                        simple=core.SimpleType.NONE, structure=core.TypeStructure(tag="none")
                    ),
                ]
            )
        ),
        "nothing": _ours_simple("NONE"),
    }


def _official_output_types() -> dict[str, Official]:
    return {
        "results": types_pb2.LiteralType(
            blob=types_pb2.BlobType(format="csv", dimensionality=types_pb2.BlobType.MULTIPART)
        ),
        "row_count": _official_simple("INTEGER"),
        "summary": types_pb2.LiteralType(enum_type=types_pb2.EnumType(values=["ok", "partial"])),
    }


def _ours_output_types() -> dict[str, core.LiteralType]:
    return {
        "results": core.LiteralType(
            blob=core.BlobType(
                format="csv", dimensionality=core.BlobTypeBlobDimensionality.MULTIPART
            )
        ),
        "row_count": _ours_simple("INTEGER"),
        "summary": core.LiteralType(enum_type=core.EnumType(values=["ok", "partial"])),
    }


def _official_variables(types: dict[str, Official]) -> Official:
    return interface_pb2.VariableMap(
        variables=[
            interface_pb2.VariableEntry(
                key=name, value=interface_pb2.Variable(type=literal_type, description=name)
            )
            for name, literal_type in types.items()
        ]
    )


def _ours_variables(types: dict[str, core.LiteralType]) -> core.VariableMap:
    return core.VariableMap(
        variables=[
            core.VariableEntry(key=name, value=core.Variable(type=literal_type, description=name))
            for name, literal_type in types.items()
        ]
    )


# --- task template --------------------------------------------------------------------------


def _official_task_metadata() -> Official:
    metadata = tasks_pb2.TaskMetadata(
        discoverable=True,
        runtime=tasks_pb2.RuntimeMetadata(
            type=tasks_pb2.RuntimeMetadata.FLYTE_SDK, version="2.0.0", flavor="python"
        ),
        timeout=official_duration(TASK_TIMEOUT),
        retries=literals_pb2.RetryStrategy(retries=3),
        discovery_version="1.0",
        interruptible=True,
        cache_serializable=True,
        tags=TASK_TAGS,
        cache_ignore_input_vars=["seed"],
    )
    metadata.generates_deck.value = True
    return metadata


def _ours_task_metadata() -> core.TaskMetadata:
    return core.TaskMetadata(
        discoverable=True,
        runtime=core.RuntimeMetadata(
            type=core.RuntimeMetadataRuntimeType.FLYTE_SDK, version="2.0.0", flavor="python"
        ),
        timeout=TASK_TIMEOUT,
        retries=core.RetryStrategy(retries=3),
        discovery_version="1.0",
        interruptible=True,
        cache_serializable=True,
        tags=_sorted(TASK_TAGS),
        cache_ignore_input_vars=["seed"],
        generates_deck=True,
    )


def _official_security_context() -> Official:
    return security_pb2.SecurityContext(
        run_as=security_pb2.Identity(
            iam_role="arn:aws:iam::123456789012:role/flyte",
            k8s_service_account="flyte-worker",
            oauth2_client=security_pb2.OAuth2Client(
                client_id="connector", client_secret=security_pb2.Secret(group="oauth", key="cs")
            ),
            execution_identity="alice@example.com",
        ),
        secrets=[
            security_pb2.Secret(
                group="gcp",
                group_version="v1",
                key="sa-json",
                mount_requirement=security_pb2.Secret.FILE,
            ),
            security_pb2.Secret(
                group="db",
                key="password",
                mount_requirement=security_pb2.Secret.ENV_VAR,
                env_var="DB_PASSWORD",
            ),
        ],
        tokens=[
            security_pb2.OAuth2TokenRequest(
                name="idp",
                type=security_pb2.OAuth2TokenRequest.CLIENT_CREDENTIALS,
                client=security_pb2.OAuth2Client(client_id="connector-idp"),
                idp_discovery_endpoint="https://idp.example.com/.well-known/openid-configuration",
                token_endpoint="https://idp.example.com/token",
            )
        ],
    )


def _ours_security_context() -> core.SecurityContext:
    return core.SecurityContext(
        run_as=core.Identity(
            iam_role="arn:aws:iam::123456789012:role/flyte",
            k8s_service_account="flyte-worker",
            oauth2_client=core.OAuth2Client(
                client_id="connector", client_secret=core.Secret(group="oauth", key="cs")
            ),
            execution_identity="alice@example.com",
        ),
        secrets=[
            core.Secret(
                group="gcp",
                group_version="v1",
                key="sa-json",
                mount_requirement=core.SecretMountType.FILE,
            ),
            core.Secret(
                group="db",
                key="password",
                mount_requirement=core.SecretMountType.ENV_VAR,
                env_var="DB_PASSWORD",
            ),
        ],
        tokens=[
            core.OAuth2TokenRequest(
                name="idp",
                type=core.OAuth2TokenRequestType.CLIENT_CREDENTIALS,
                client=core.OAuth2Client(client_id="connector-idp"),
                idp_discovery_endpoint="https://idp.example.com/.well-known/openid-configuration",
                token_endpoint="https://idp.example.com/token",
            )
        ],
    )


def official_task_template(*, target: Target = "sql") -> Official:
    """A TaskTemplate with every part a connector reads; `target` picks the oneof member."""
    if target == "sql":
        targets = {"sql": tasks_pb2.Sql(statement=SQL_STATEMENT, dialect=tasks_pb2.Sql.ANSI)}
    else:
        targets = {"container": tasks_pb2.Container(image=IMAGE, args=["pyflyte-execute"])}
    return tasks_pb2.TaskTemplate(
        id=_official_task_id(),
        type=TASK_TYPE,
        metadata=_official_task_metadata(),
        interface=interface_pb2.TypedInterface(
            inputs=_official_variables(_official_input_types()),
            outputs=_official_variables(_official_output_types()),
        ),
        custom=official_struct(CUSTOM),
        task_type_version=2,
        security_context=_official_security_context(),
        config=TEMPLATE_CONFIG,
        **targets,
    )


def ours_task_template(*, target: Target = "sql") -> core.TaskTemplate:
    """Our `official_task_template`."""
    template = core.TaskTemplate(
        id=_ours_task_id(),
        type=TASK_TYPE,
        metadata=_ours_task_metadata(),
        interface=core.TypedInterface(
            inputs=_ours_variables(_ours_input_types()),
            outputs=_ours_variables(_ours_output_types()),
        ),
        custom=ours_struct(CUSTOM),
        task_type_version=2,
        security_context=_ours_security_context(),
        config=_sorted(TEMPLATE_CONFIG),
    )
    if target == "sql":
        template.sql = core.Sql(statement=SQL_STATEMENT, dialect=core.SqlDialect.ANSI)
    else:
        template.container = core.Container(image=IMAGE, args=["pyflyte-execute"])
    return template


# --- requests and responses -----------------------------------------------------------------


def official_task_execution_metadata() -> Official:
    return connector_pb2.TaskExecutionMetadata(
        task_execution_id=_official_task_execution_id(),
        namespace=f"{PROJECT}-{DOMAIN}",
        labels=LABELS,
        annotations=ANNOTATIONS,
        k8s_service_account="default",
        environment_variables=ENVIRONMENT,
        max_attempts=4,
        interruptible=True,
        interruptible_failure_threshold=2,
        identity=security_pb2.Identity(execution_identity="alice@example.com"),
    )


def ours_task_execution_metadata(
    *, labels: dict[str, str] | None = None
) -> connector.TaskExecutionMetadata:
    """Our `official_task_execution_metadata`; `labels` overrides the labels as given."""
    return connector.TaskExecutionMetadata(
        task_execution_id=_ours_task_execution_id(),
        namespace=f"{PROJECT}-{DOMAIN}",
        labels=_sorted(LABELS) if labels is None else labels,
        annotations=_sorted(ANNOTATIONS),
        k8s_service_account="default",
        environment_variables=_sorted(ENVIRONMENT),
        max_attempts=4,
        interruptible=True,
        interruptible_failure_threshold=2,
        identity=core.Identity(execution_identity="alice@example.com"),
    )


def create_task_request(*, target: Target = "sql") -> WireSample:
    """A rich CreateTaskRequest, as flytepropeller sends it to a connector."""
    official = connector_pb2.CreateTaskRequest(
        inputs=common_pb2.Inputs(
            literals=_official_literals(),
            context=[literals_pb2.KeyValuePair(key="trace_id", value="t-1")],
        ),
        template=official_task_template(target=target),
        output_prefix=OUTPUT_PREFIX,
        task_execution_metadata=official_task_execution_metadata(),
        connection=security_pb2.Connection(
            task_type=TASK_TYPE, secrets=CONNECTION_SECRETS, configs=CONNECTION_CONFIGS
        ),
    )
    ours = connector.CreateTaskRequest(
        inputs=task.Inputs(
            literals=_ours_literals(),
            context=[core.KeyValuePair(key="trace_id", value="t-1")],
        ),
        template=ours_task_template(target=target),
        output_prefix=OUTPUT_PREFIX,
        task_execution_metadata=ours_task_execution_metadata(),
        connection=core.Connection(
            task_type=TASK_TYPE,
            secrets=_sorted(CONNECTION_SECRETS),
            configs=_sorted(CONNECTION_CONFIGS),
        ),
    )
    return WireSample(official=official, ours=ours)


def _resource_message(phase: int) -> str:
    return f"BigQuery job bqjob_r1234 reports phase {phase}"


def get_task_response(phase: core.TaskExecutionPhase) -> WireSample:
    """A GetTaskResponse in `phase`, with outputs, log links and custom info."""
    official = connector_pb2.GetTaskResponse(
        resource=connector_pb2.Resource(
            outputs=_official_outputs(),
            message=_resource_message(int(phase)),
            log_links=[
                execution_pb2.TaskLog(
                    uri="https://console.cloud.google.com/bigquery?j=bqjob_r1234",
                    name="BigQuery Console",
                    message_format=execution_pb2.TaskLog.JSON,
                    ttl=official_duration(LOG_TTL),
                ),
                execution_pb2.TaskLog(
                    uri="https://logs.example.com/bqjob_r1234.csv",
                    name="Audit log",
                    message_format=execution_pb2.TaskLog.CSV,
                ),
                execution_pb2.TaskLog(
                    uri="https://logs.example.com/raw",
                    name="Raw",
                    ttl=official_duration(dt.timedelta(microseconds=1)),
                ),
            ],
            phase=int(phase),
            custom_info=official_struct(CUSTOM_INFO),
        )
    )
    ours = connector.GetTaskResponse(
        resource=connector.Resource(
            outputs=_ours_outputs(),
            message=_resource_message(int(phase)),
            log_links=[
                core.TaskLog(
                    uri="https://console.cloud.google.com/bigquery?j=bqjob_r1234",
                    name="BigQuery Console",
                    message_format=core.TaskLogMessageFormat.JSON,
                    ttl=LOG_TTL,
                ),
                core.TaskLog(
                    uri="https://logs.example.com/bqjob_r1234.csv",
                    name="Audit log",
                    message_format=core.TaskLogMessageFormat.CSV,
                ),
                core.TaskLog(
                    uri="https://logs.example.com/raw",
                    name="Raw",
                    ttl=dt.timedelta(microseconds=1),
                ),
            ],
            phase=phase,
            custom_info=ours_struct(CUSTOM_INFO),
        )
    )
    return WireSample(official=official, ours=ours)


def get_task_logs_header() -> WireSample:
    """The first message of a GetTaskLogs stream: a header with the next-page token."""
    official = connector_pb2.GetTaskLogsResponse(
        header=connector_pb2.GetTaskLogsResponseHeader(token="page-2")
    )
    ours = connector.GetTaskLogsResponse(header=connector.GetTaskLogsResponseHeader(token="page-2"))
    return WireSample(official=official, ours=ours)


def get_task_logs_body() -> WireSample:
    """A GetTaskLogs stream message with structured lines (the non-deprecated field)."""
    official = connector_pb2.GetTaskLogsResponse(
        body=connector_pb2.GetTaskLogsResponseBody(
            lines=[
                payload_pb2.LogLine(
                    timestamp=official_timestamp(START),
                    message="Job bqjob_r1234 started",
                    originator=payload_pb2.SYSTEM,
                    short_pod_name="connector-0",
                ),
                payload_pb2.LogLine(
                    timestamp=official_timestamp(START + WINDOW),
                    message="rows: 12345 ✓",
                    originator=payload_pb2.USER,
                ),
                payload_pb2.LogLine(message=""),
            ]
        )
    )
    ours = connector.GetTaskLogsResponse(
        body=connector.GetTaskLogsResponseBody(
            lines=[
                dataplane.LogLine(
                    timestamp=START,
                    message="Job bqjob_r1234 started",
                    originator=dataplane.LogLineOriginator.SYSTEM,
                    short_pod_name="connector-0",
                ),
                dataplane.LogLine(
                    timestamp=START + WINDOW,
                    message="rows: 12345 ✓",
                    originator=dataplane.LogLineOriginator.USER,
                ),
                dataplane.LogLine(message=""),
            ]
        )
    )
    return WireSample(official=official, ours=ours)
