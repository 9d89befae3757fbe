"""flyte-sdk's registry idioms: ``ConnectorRegistry.register(c)`` on the class, discovery.

Each test runs with a fresh default registry (``isolated_default_registry``) and imports its
modules afresh, so what one test registers on import is not seen by the next.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from flyteidl2.connector import connector_pb2, service_pb2_grpc
from flyteidl2.core import identifier_pb2, security_pb2, tasks_pb2

from connectors import (
    ConnectorNeedsArguments,
    ConnectorNotFound,
    ConnectorRegistry,
    DuplicateConnector,
    TaskType,
    load_connectors,
)
from connectors.testing import FakeConnector, FakeService, isolated_default_registry
from tests.support.sample_connectors import EchoConnector, PlainConnector
from tests.support.server import ServerProcess

WriteModule = Callable[[str], str]


@pytest.fixture(autouse=True)
def default_registry() -> Iterator[ConnectorRegistry]:
    with isolated_default_registry() as registry:
        yield registry


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write a module on sys.path and return its name; each name is new to the process."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"registry_default_{tmp_path.name}_{len(names)}".replace("-", "_")
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


# -- on the class: the default registry --------------------------------------------------


def test_register_on_the_class_fills_the_default_registry(
    default_registry: ConnectorRegistry,
) -> None:
    echo = EchoConnector()
    ConnectorRegistry.register(echo)
    assert ConnectorRegistry.get_connector("echo") is echo
    assert ConnectorRegistry.get_connector("echo", 0) is echo
    assert default_registry.get("echo") is echo
    assert ConnectorRegistry.default() is default_registry


def test_get_connector_on_the_class_of_an_unknown_task_type_raises_connector_not_found() -> None:
    with pytest.raises(ConnectorNotFound, match="no connector for task type 'nope' version 3"):
        ConnectorRegistry.get_connector("nope", 3)


def test_explicit_registries_keep_their_own_connectors() -> None:
    ConnectorRegistry.register(EchoConnector())
    explicit = ConnectorRegistry([PlainConnector()])
    explicit.register(FakeConnector(FakeService()))
    assert [key.name for key, _ in explicit] == ["fake", "plain"]
    assert [key.name for key, _ in ConnectorRegistry.default()] == ["echo"]
    assert isinstance(explicit.get_connector("plain"), PlainConnector)


def test_register_on_the_class_with_override_replaces(default_registry: ConnectorRegistry) -> None:
    first, second = EchoConnector(), EchoConnector()
    ConnectorRegistry.register(first)
    ConnectorRegistry.register(second, override=True)
    assert default_registry.get("echo") is second


def test_register_of_a_class_instead_of_an_instance_says_what_to_write() -> None:
    with pytest.raises(TypeError, match=r"ConnectorRegistry.register\(EchoConnector\(\)\)"):
        ConnectorRegistry.register(EchoConnector)  # type: ignore[arg-type]


# -- modules: registered on import, defined, or both --------------------------------------

REGISTERS_AND_DEFINES = """
    from connectors import ConnectorRegistry
    from tests.support.sample_connectors import EchoConnector

    class Greeter(EchoConnector):
        task_type_name = "greeter"

        def __init__(self, greeting: str) -> None:
            self.greeting = greeting

    class Plain(EchoConnector):  # defined and registered: one connector
        task_type_name = "plain_here"

    ConnectorRegistry.register(Greeter("hello"))
    ConnectorRegistry.register(Plain())
"""


def test_a_module_that_registers_on_import_and_defines_classes_serves_each_once(
    write_module: WriteModule, default_registry: ConnectorRegistry
) -> None:
    name = write_module(REGISTERS_AND_DEFINES)
    registry = load_connectors(False, [name, name])  # twice: still once each
    assert registry is default_registry
    assert [key for key, _ in registry] == [TaskType("greeter"), TaskType("plain_here")]
    greeter = registry.get("greeter")
    assert greeter.greeting == "hello"  # type: ignore[attr-defined]


def test_an_explicit_registry_loading_the_module_finds_what_it_registered_on_import(
    write_module: WriteModule,
) -> None:
    name = write_module(REGISTERS_AND_DEFINES)
    importlib.import_module(name)  # imported before: its registrations are remembered
    with isolated_default_registry():
        explicit = ConnectorRegistry()
        explicit.load_module(name)
    assert sorted(key.name for key, _ in explicit) == ["greeter", "plain_here"]


def test_a_class_that_needs_constructor_arguments_gets_told_to_register_an_instance(
    write_module: WriteModule,
) -> None:
    name = write_module(
        """
        from tests.support.sample_connectors import EchoConnector

        class Needy(EchoConnector):
            task_type_name = "needy"

            def __init__(self, endpoint: str) -> None:
                self.endpoint = endpoint
        """
    )
    with pytest.raises(ConnectorNeedsArguments) as error:
        ConnectorRegistry().load_module(name)
    message = str(error.value)
    assert message.startswith(f"module {name!r}: connector class Needy needs constructor arguments")
    assert "missing a required argument: 'endpoint'" in message
    assert message.endswith(
        "register an instance instead, e.g. `ConnectorRegistry.register(Needy(...))` at the "
        "module's top level"
    )
    assert isinstance(error.value, TypeError)


def test_the_same_task_type_from_two_modules_names_both_modules(write_module: WriteModule) -> None:
    source = """
        from connectors import ConnectorRegistry
        from tests.support.sample_connectors import EchoConnector

        ConnectorRegistry.register(EchoConnector())
    """
    first, second = write_module(source), write_module(source)
    load_connectors(False, [first])
    with pytest.raises(DuplicateConnector) as error:
        load_connectors(False, [second])
    assert str(error.value) == (
        "duplicate connector for task type 'echo' version 0: "
        f"tests.support.sample_connectors.EchoConnector from module {first!r} and "
        f"tests.support.sample_connectors.EchoConnector from module {second!r} "
        "(serve one of them, or register the second with override=True)"
    )


# -- entry points yield to what is named explicitly --------------------------------------

GROUP = "registry_default_tests.connectors"


class MyEcho(EchoConnector):
    """Serves the task type of the entry point's EchoConnector."""


def _distribution(root: Path, group: str, line: str) -> None:
    info = root / "registry_default_fake-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rd-fake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{line}\n")


def test_an_entry_point_connector_yields_to_one_named_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _distribution(tmp_path, GROUP, "echo = tests.support.sample_connectors:EchoConnector")
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = MyEcho()
    registry = ConnectorRegistry([mine])
    with caplog.at_level(logging.INFO, logger="connectors._registry"):
        registry.load_entry_points(GROUP)
    assert registry.get("echo") is mine
    assert (
        "task type echo v0: tests.support.sample_connectors.EchoConnector from entry point "
        f"'echo' ({GROUP}) yields to MyEcho from module 'tests.test_registry_default'"
    ) in caplog.text
    replaced = ConnectorRegistry()
    replaced.load_entry_points(GROUP)
    replaced.register(mine)  # explicit after the entry point: replaces it, no error
    assert replaced.get("echo") is mine


# -- a real server -------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_serves_a_module_that_registers_on_import_unchanged(tmp_path: Path) -> None:
    args = ["--entry-points", "false", "--modules", "tests.support.registered_at_import"]
    env = {"LEDGER_ROOT": str(tmp_path / "ledger")}
    with ServerProcess(args, log_dir=tmp_path, env=env) as server:
        server.start()
        assert "connector 'Ledger connector': task type ledger v0" in server.stdout_text()
        with grpc.insecure_channel(server.address) as channel:
            metadata = service_pb2_grpc.ConnectorMetadataServiceStub(channel)
            listed = metadata.ListConnectors(connector_pb2.ListConnectorsRequest(), timeout=10)
            assert [c.name for c in listed.connectors] == ["Ledger connector", "Token connector"]
            stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            created = stub.CreateTask(
                connector_pb2.CreateTaskRequest(
                    template=tasks_pb2.TaskTemplate(type="token"),
                    task_execution_metadata=connector_pb2.TaskExecutionMetadata(
                        task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                            task_id=identifier_pb2.Identifier(name="t")
                        )
                    ),
                    connection=security_pb2.Connection(secrets={"api_token": "s3cret"}),
                ),
                timeout=10,
            )
            assert json.loads(created.resource_meta)["job_id"] == "token-6"
            with pytest.raises(grpc.RpcError) as refused:  # no api_token: not a TypeError
                stub.CreateTask(
                    connector_pb2.CreateTaskRequest(template=tasks_pb2.TaskTemplate(type="token")),
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details() == (
                "missing connection.secrets key 'api_token': Token connector's create requires it"
            )
        assert server.stop() == 0


@pytest.mark.slow
def test_serve_polls_a_task_type_at_the_interval_the_operator_set(tmp_path: Path) -> None:
    args = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
    args += ["--connector-poll-interval", "echo=7"]
    with ServerProcess(args, log_dir=tmp_path) as server:
        server.start()
        lines = server.stdout_text().splitlines()
        assert "connector 'Echo connector': task type echo v0, polling every 7 s" in lines
        # Only the task type named changes (and says so).
        assert any(line.endswith("task type plain v0") for line in lines), lines
