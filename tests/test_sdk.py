"""The connector SDK: ResourceMeta, StateMap, terminal phases, ConnectorRegistry, and the
DirectService error mapping (called directly in Trio: no gRPC)."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors import (
    TERMINAL_PHASES,
    AsyncConnector,
    ConnectorNotFound,
    ConnectorRegistry,
    DuplicateConnector,
    InvalidResourceMeta,
    Phase,
    Resource,
    ResourceMeta,
    StateMap,
    TaskType,
    is_terminal,
)
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Connection,
    Literal,
    Primitive,
    Scalar,
    TaskExecutionPhase,
    TaskTemplate,
)
from flyteproto.flyteidl2.task import Inputs, NamedLiteral
from supervisor import ConnectorFailed, DirectService, InvalidArgument, NotFound, Unimplemented
from tests.support.sample_connectors import (
    BrokenConnector,
    EchoConnector,
    EchoMeta,
    KwargsConnector,
    PlainConnector,
)

# ResourceMeta --------------------------------------------------------------------------


@dataclass
class Location:
    region: str
    zone: str = "a"


@dataclass
class JobMeta(ResourceMeta):
    job_id: str
    location: Location
    previous: Location | None = None
    attempts: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)


JOB = JobMeta(
    job_id="job-1",
    location=Location(region="eu", zone="b"),
    previous=Location(region="us"),
    attempts=2,
    labels={"team": "data"},
    steps=["load", "run"],
)


def test_resource_meta_round_trips_through_encode_and_decode() -> None:
    assert JobMeta.decode(JOB.encode()) == JOB


def test_resource_meta_decodes_nested_dataclass_fields_as_dataclasses() -> None:
    decoded = JobMeta.decode(JOB.encode())
    assert isinstance(decoded.location, Location)
    assert isinstance(decoded.previous, Location)


def test_resource_meta_decodes_an_optional_nested_field_left_empty_as_none() -> None:
    meta = JobMeta(job_id="job-1", location=Location(region="eu"))
    assert JobMeta.decode(meta.encode()).previous is None


def test_resource_meta_encodes_compact_json_with_sorted_keys() -> None:
    meta = JobMeta(job_id="j", location=Location(region="eu"))
    assert meta.encode() == (
        b'{"attempts":0,"job_id":"j","labels":{},'
        b'"location":{"region":"eu","zone":"a"},"previous":null,"steps":[]}'
    )


def test_resource_meta_fields_with_defaults_may_be_missing() -> None:
    decoded = JobMeta.decode(b'{"job_id": "j", "location": {"region": "eu"}}')
    assert decoded == JobMeta(job_id="j", location=Location(region="eu"))


@pytest.mark.parametrize("data", [b"not json", b'{"job_id": ', b"\xff\xfe"])
def test_resource_meta_that_is_not_json_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidResourceMeta, match=r"^resource_meta is not JSON: "):
        JobMeta.decode(data)


@pytest.mark.parametrize(("data", "kind"), [(b"[1, 2]", "list"), (b'"job-1"', "str")])
def test_resource_meta_that_is_not_a_json_object_is_refused(data: bytes, kind: str) -> None:
    with pytest.raises(InvalidResourceMeta) as error:
        JobMeta.decode(data)
    assert str(error.value) == f"resource_meta must be a JSON object, not {kind}"


def test_resource_meta_with_a_missing_field_is_refused_naming_it() -> None:
    with pytest.raises(InvalidResourceMeta) as error:
        JobMeta.decode(b'{"location": {"region": "eu"}}')
    assert str(error.value) == "missing field(s) for JobMeta: job_id"


def test_resource_meta_with_an_unknown_field_is_refused_naming_it() -> None:
    with pytest.raises(InvalidResourceMeta) as error:
        JobMeta.decode(b'{"job_id": "j", "location": {"region": "eu"}, "extra": 1, "more": 2}')
    assert str(error.value) == "unknown field(s) for JobMeta: extra, more"


def test_resource_meta_with_a_bad_nested_dataclass_field_is_refused_naming_it() -> None:
    with pytest.raises(InvalidResourceMeta) as error:
        JobMeta.decode(b'{"job_id": "j", "location": {"zone": "b"}}')
    assert str(error.value) == "missing field(s) for Location: region"


def test_invalid_resource_meta_is_a_value_error() -> None:
    assert issubclass(InvalidResourceMeta, ValueError)


# Phases --------------------------------------------------------------------------------


def test_phase_is_the_generated_task_execution_phase() -> None:
    assert Phase is TaskExecutionPhase


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.name)
def test_is_terminal_only_for_succeeded_failed_aborted_and_retryable_failed(
    phase: Phase,
) -> None:
    final = {Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.RETRYABLE_FAILED}
    assert is_terminal(phase) == (phase in final)


def test_terminal_phases_are_the_four_final_phases() -> None:
    assert {Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.RETRYABLE_FAILED} == set(
        TERMINAL_PHASES
    )


STATES = StateMap({"DONE": Phase.SUCCEEDED, "Pending": Phase.QUEUED}, service="Warehouse")


@pytest.mark.parametrize(
    ("state", "phase"),
    [("DONE", Phase.SUCCEEDED), ("done", Phase.SUCCEEDED), ("PENDING", Phase.QUEUED)],
)
def test_state_map_maps_known_states_case_insensitively(state: str, phase: Phase) -> None:
    assert STATES.phase(state) == (phase, "")


def test_state_map_maps_an_unknown_state_to_running_with_a_message() -> None:
    assert STATES.phase("DEFROSTING") == (
        Phase.RUNNING,
        "unknown Warehouse state 'DEFROSTING': treated as running",
    )


def test_state_map_logs_a_warning_for_an_unknown_state(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors"):
        STATES.phase("DEFROSTING")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "unknown Warehouse state 'DEFROSTING': reporting RUNNING"


def test_state_map_does_not_warn_for_a_known_state(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors"):
        STATES.phase("done")
    assert caplog.records == []


# Registry ------------------------------------------------------------------------------


@dataclass
class IdMeta(ResourceMeta):
    job_id: str


class _Quiet(AsyncConnector[IdMeta]):
    metadata_type = IdMeta

    async def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        task_execution_metadata: pb.TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> IdMeta:
        return IdMeta(job_id="quiet")

    async def get(self, resource_meta: IdMeta, **kwargs: Any) -> Resource:
        return Resource(phase=Phase.RUNNING)

    async def delete(self, resource_meta: IdMeta, **kwargs: Any) -> None:
        return None


class AlphaV0(_Quiet):
    name = "Alpha"
    task_type_name = "alpha"


class AlphaV1(_Quiet):
    name = "Alpha"
    task_type_name = "alpha"
    task_type_version = 1


class Beta(_Quiet):
    name = "Beta"
    task_type_name = "beta"


def test_override_options_sets_the_values_given_and_keeps_the_class_defaults() -> None:
    connector = Beta()
    connector.override_options(poll_interval=2.5, call_timeout=None)
    assert (connector.poll_interval, connector.max_concurrent_calls) == (2.5, 64)
    assert connector.call_timeout == 60.0
    assert Beta.poll_interval == 10.0  # the class is untouched


def test_registry_gets_a_connector_by_task_type_name_and_version() -> None:
    alpha0, alpha1 = AlphaV0(), AlphaV1()
    registry = ConnectorRegistry([alpha0, alpha1])
    assert registry.get("alpha") is alpha0
    assert registry.get("alpha", 1) is alpha1


def test_registry_lookup_of_an_unknown_task_type_raises_connector_not_found() -> None:
    registry = ConnectorRegistry([AlphaV0()])
    with pytest.raises(ConnectorNotFound) as error:
        registry.get("alpha", 2)
    assert str(error.value) == "no connector for task type 'alpha' version 2"


def test_registry_refuses_a_second_connector_for_a_task_type() -> None:
    registry = ConnectorRegistry([AlphaV0()])
    with pytest.raises(DuplicateConnector) as error:
        registry.register(AlphaV0())
    assert str(error.value).startswith(
        "duplicate connector for task type 'alpha' version 0: "
        "AlphaV0 from module 'tests.test_sdk' and AlphaV0 from module 'tests.test_sdk'"
    )


def test_registry_replaces_a_connector_when_told_to_override() -> None:
    replacement = AlphaV0()
    registry = ConnectorRegistry([AlphaV0()])
    registry.register(replacement, override=True)
    assert registry.get("alpha") is replacement


def test_registry_iterates_task_types_in_order() -> None:
    beta, alpha1, alpha0 = Beta(), AlphaV1(), AlphaV0()
    registry = ConnectorRegistry([beta, alpha1, alpha0])
    assert list(registry) == [
        (TaskType("alpha", 0), alpha0),
        (TaskType("alpha", 1), alpha1),
        (TaskType("beta", 0), beta),
    ]
    assert len(registry) == 3
    assert TaskType("alpha", 1) in registry


def test_list_metadata_groups_task_types_by_connector_name() -> None:
    registry = ConnectorRegistry([Beta(), AlphaV1(), AlphaV0()])
    assert registry.list_metadata() == [
        pb.Connector(
            name="Alpha",
            supported_task_categories=[
                pb.TaskCategory(name="alpha", version=0),
                pb.TaskCategory(name="alpha", version=1),
            ],
        ),
        pb.Connector(name="Beta", supported_task_categories=[pb.TaskCategory(name="beta")]),
    ]


def test_metadata_of_a_connector_name_lists_its_task_types() -> None:
    registry = ConnectorRegistry([Beta(), AlphaV1(), AlphaV0()])
    assert registry.metadata("Beta") == pb.Connector(
        name="Beta", supported_task_categories=[pb.TaskCategory(name="beta")]
    )


def test_metadata_of_an_unknown_connector_name_raises_connector_not_found() -> None:
    with pytest.raises(ConnectorNotFound, match="no connector named 'Gamma'"):
        ConnectorRegistry([Beta()]).metadata("Gamma")


WriteModule = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write a module of connectors on sys.path; return its name. Forgotten at teardown."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"sdk_test_connectors_{len(names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


CONNECTOR_MODULE = """
    from typing import Any

    from connectors import AsyncConnector, Phase, Resource
    from tests.support.sample_connectors import EchoConnector, EchoMeta, PlainConnector

    class Abstract(AsyncConnector[EchoMeta]):
        task_type_name = "abstract"

    class Defined(Abstract):
        name = "Defined"
        task_type_name = "defined"
        metadata_type = EchoMeta

        async def create(self, task_template: Any, output_prefix: str, **kwargs: Any) -> Any:
            raise NotImplementedError

        async def get(self, resource_meta: EchoMeta, **kwargs: Any) -> Resource:
            return Resource(phase=Phase.RUNNING)

        async def delete(self, resource_meta: EchoMeta, **kwargs: Any) -> None:
            return None

    configured = EchoConnector()
"""


def test_load_module_registers_concrete_classes_defined_in_it_and_instances(
    write_module: WriteModule,
) -> None:
    name = write_module(CONNECTOR_MODULE)
    registry = ConnectorRegistry()
    registry.load_module(name)
    assert [key for key, _ in registry] == [TaskType("defined"), TaskType("echo")]
    assert registry.get("echo") is importlib.import_module(name).configured


def test_load_module_of_the_same_module_twice_is_harmless() -> None:
    registry = ConnectorRegistry()
    registry.load_module("tests.support.sample_connectors")
    registry.load_module("tests.support.sample_connectors")
    assert len(registry) == 5


def test_load_module_of_a_missing_module_raises_import_error() -> None:
    with pytest.raises(ImportError, match="no_such_module_for_sdk_tests"):
        ConnectorRegistry().load_module("no_such_module_for_sdk_tests")


FAKE_GROUP = "sdk_tests.connectors"


def _fake_distribution(root: Path, entry_points: str) -> None:
    info = root / "fake_connectors-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-connectors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{FAKE_GROUP}]\n{entry_points}")


def test_load_entry_points_registers_connectors_advertised_by_a_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(tmp_path, "echo = tests.support.sample_connectors:EchoConnector\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ConnectorRegistry()
    registry.load_entry_points(FAKE_GROUP)
    assert isinstance(registry.get("echo"), EchoConnector)


def test_load_entry_points_refuses_a_value_that_is_not_a_connector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(tmp_path, "odd = tests.support.sample_connectors:EchoMeta\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    not_a_connector = r"entry point 'odd' \(sdk_tests.connectors\) is not an AsyncConnector"
    with pytest.raises(TypeError, match=not_a_connector):
        ConnectorRegistry().load_entry_points(FAKE_GROUP)


# DirectService, called in Trio ---------------------------------------------------------


@pytest.fixture
def service() -> DirectService:
    return DirectService(
        ConnectorRegistry([EchoConnector(), BrokenConnector(), PlainConnector(), KwargsConnector()])
    )


def _create(task_type: str, connection: Connection | None = None) -> pb.CreateTaskRequest:
    inputs = Inputs(
        literals=[
            NamedLiteral(name="n", value=Literal(scalar=Scalar(primitive=Primitive(integer=7))))
        ]
    )
    return pb.CreateTaskRequest(
        template=TaskTemplate(type=task_type),
        inputs=inputs,
        output_prefix="s3://bucket/prefix",
        connection=connection,
    )


ECHO = pb.TaskCategory(name="echo")
PLAIN = pb.TaskCategory(name="plain")
ECHO_META = EchoMeta(job_id="echo-1", inputs={"n": 7}, secret_names=[]).encode()


async def test_direct_create_returns_the_encoded_resource_meta(service: DirectService) -> None:
    response = await service.create_task(_create("echo"))
    assert response.resource_meta == ECHO_META


async def test_direct_get_converts_the_resource(service: DirectService) -> None:
    response = await service.get_task(
        pb.GetTaskRequest(task_category=ECHO, resource_meta=ECHO_META)
    )
    assert response.resource is not None
    assert response.resource.phase == Phase.SUCCEEDED
    assert response.resource.outputs is not None
    assert [lit.name for lit in response.resource.outputs.literals] == ["n"]


async def test_direct_connection_arrives_as_keyword_arguments_configs_winning(
    service: DirectService,
) -> None:
    connection = Connection(secrets={"key": "secret", "both": "s"}, configs={"both": "c"})
    response = await service.create_task(_create("kwargs", connection))
    assert response.resource_meta == b'{"create_kwargs":{"both":"c","key":"secret"}}'


async def test_direct_unknown_task_type_is_not_found(service: DirectService) -> None:
    with pytest.raises(NotFound, match="no connector for task type 'nope' version 0"):
        await service.create_task(_create("nope"))


async def test_direct_missing_task_category_is_invalid_argument(service: DirectService) -> None:
    with pytest.raises(InvalidArgument, match="task_category is required"):
        await service.get_task(pb.GetTaskRequest(resource_meta=ECHO_META))


async def test_direct_bad_resource_meta_is_invalid_argument(service: DirectService) -> None:
    request = pb.DeleteTaskRequest(task_category=ECHO, resource_meta=b'{"job_id": "x"}')
    with pytest.raises(InvalidArgument) as error:
        await service.delete_task(request)
    assert str(error.value) == (
        "resource_meta for Echo connector: missing field(s) for EchoMeta: inputs, secret_names"
    )


async def test_direct_empty_resource_meta_is_invalid_argument(service: DirectService) -> None:
    with pytest.raises(InvalidArgument, match="resource_meta is empty"):
        await service.get_task(pb.GetTaskRequest(task_category=ECHO))


async def test_direct_raising_connector_is_connector_failed_with_its_message(
    service: DirectService,
) -> None:
    with pytest.raises(ConnectorFailed) as error:
        await service.create_task(_create("broken"))
    assert str(error.value) == (
        "Broken connector create failed: boom: the external service refused the job"
    )
    assert isinstance(error.value.__cause__, RuntimeError)


async def test_direct_missing_metrics_are_unimplemented(service: DirectService) -> None:
    request = pb.GetTaskMetricsRequest(task_category=PLAIN, resource_meta=b'{"job_id": "x"}')
    with pytest.raises(Unimplemented, match="Plain connector does not provide metrics"):
        await service.get_task_metrics(request)


async def test_direct_missing_logs_are_unimplemented(service: DirectService) -> None:
    request = pb.GetTaskLogsRequest(task_category=PLAIN, resource_meta=b'{"job_id": "x"}')
    with pytest.raises(Unimplemented, match="Plain connector does not provide logs"):
        async for _ in service.get_task_logs(request):
            pass


async def test_direct_logs_stream_every_response_of_the_connector(
    service: DirectService,
) -> None:
    request = pb.GetTaskLogsRequest(task_category=ECHO, resource_meta=ECHO_META)
    responses = [response async for response in service.get_task_logs(request)]
    assert [r.header.token if r.header else None for r in responses] == ["next-page", None]


def test_direct_unknown_connector_name_is_not_found(service: DirectService) -> None:
    with pytest.raises(NotFound, match="no connector named 'Nope'"):
        service.get_connector("Nope")
