"""``c0``: flyte-sdk's connector-service command line, as Flyte's Helm chart runs it.

The process tests run ``python -m supervisor c0`` (the shared virtualenv's ``c0`` script may
still be flyte-sdk's own until this package is installed again); a test checks that the
``c0`` console script of pyproject.toml maps to the same function.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl2.connector import connector_pb2, service_pb2_grpc
from flyteidl2.core import identifier_pb2, tasks_pb2
from google.protobuf import struct_pb2

from supervisor.cli import build_parser, c0_main, c0_settings
from tests.support.server import REPO_ROOT, ServerProcess, wait_for

C0 = ["c0"]


def settings_of(environ: dict[str, str], *argv: str) -> Any:
    return c0_settings(build_parser(environ).parse_args([*C0, *argv]), environ)


def test_pyproject_maps_the_c0_console_script_to_c0_main() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    module, _, name = project["scripts"]["c0"].partition(":")
    assert getattr(importlib.import_module(module), name) is c0_main


def test_defaults_are_flyte_sdks() -> None:
    settings = settings_of({})
    assert (settings.port, settings.metrics_port, settings.modules) == (8000, 9090, ())
    assert settings.stop_after is None
    assert settings.entry_points is True


def test_the_helm_charts_command_line_parses() -> None:
    argv = "--port 8000 --prometheus_port 9090 --worker 40 --timeout 600 --modules a.b c.d"
    settings = settings_of({}, *argv.split(), "--modules", "e")
    assert (settings.port, settings.metrics_port) == (8000, 9090)
    assert settings.modules == ("a.b", "c.d", "e")
    assert settings.stop_after == 600.0


def test_everything_else_comes_from_our_environment() -> None:
    environ = {
        "SUPERVISOR_JOURNAL": "postgresql://u:p@db/journal",
        "SUPERVISOR_MODULES": "from.env",
        "SUPERVISOR_GRACE": "3",
        "SUPERVISOR_LOG_FORMAT": "json",
        "SUPERVISOR_PORT": "1",  # c0's flags keep flyte-sdk's defaults
        "SUPERVISOR_METRICS_PORT": "2",
    }
    settings = settings_of(environ, "--modules", "from.flag")
    assert settings.journal == "postgresql://u:p@db/journal"
    assert settings.modules == ("from.env", "from.flag")
    assert (settings.grace, settings.log_format) == (3.0, "json")
    assert (settings.port, settings.metrics_port) == (8000, 9090)


@pytest.mark.parametrize(
    "argv",
    [["--port", "eighty"], ["--prometheus_port", "off"], ["--timeout", "-1"], ["--workers", "2"]],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        c0_main(argv)
    assert exit_.value.code == 2
    assert "c0: error:" in capsys.readouterr().err


def test_the_image_puts_our_c0_first_on_path_with_the_flytesdk_extra() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "ENV PATH=/opt/supervisor/bin:$PATH" in dockerfile
    assert 'exec tini -s -- python -m supervisor c0 "$@"' in dockerfile
    assert "> /opt/supervisor/bin/c0" in dockerfile
    assert '"flyte-connector-supervisor[postgres,databricks,flytesdk]==' in dockerfile


# -- the real server ---------------------------------------------------------------------


class C0Process(ServerProcess):
    """``python -m supervisor c0 ARGS``: the flags are all in ``args``."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "supervisor", *C0, *self.args]


def _flyte_plugin(root: Path) -> Path:
    """A distribution on ``root`` that advertises a flyte-sdk connector, as flyteplugins do."""
    info = root / "flyteplugins_sleep_fake-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sleep-fake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[flyte.connectors]\nsleep = tests.support.flytesdk_sample:SleepConnector\n"
    )
    return root


@pytest.mark.slow
def test_c0_serves_modules_and_flyte_plugins_with_our_journal(tmp_path: Path) -> None:
    journal = tmp_path / "c0-journal.db"
    env = {
        "PYTHONPATH": str(_flyte_plugin(tmp_path / "site")),
        "SUPERVISOR_JOURNAL": f"sqlite:///{journal}",
        "LEDGER_ROOT": str(tmp_path / "ledger"),
    }
    argv = ["--port", "0", "--prometheus_port", "0", "--worker", "4"]
    argv += ["--modules", "tests.support.registered_at_import"]
    with C0Process(argv, log_dir=tmp_path / "logs", env=env) as server:
        server.start()
        assert f"journal sqlite:///{journal}: resumed 0 job(s)" in server.stdout_text()
        with grpc.insecure_channel(server.address) as channel:
            metadata = service_pb2_grpc.ConnectorMetadataServiceStub(channel)
            listed = metadata.ListConnectors(connector_pb2.ListConnectorsRequest(), timeout=10)
            names = {c.name for c in listed.connectors}
            # Our entry points, the flyte-sdk plugin's (through the adapter), the module's.
            assert {
                "Local process connector",
                "flyte-sdk sleep connector",
                "Ledger connector",
                "Token connector",
            } <= names
            stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            created = stub.CreateTask(_sleep_request(), timeout=10)
            assert created.resource_meta.startswith(b'{"job_id": "sleep-')
        assert journal.exists()
        wait_for("metrics", lambda: "metrics on" in server.stdout_text(), timeout=5)
        assert server.stop() == 0


def _sleep_request() -> Any:
    return connector_pb2.CreateTaskRequest(
        template=tasks_pb2.TaskTemplate(type="flytesdk_sleep", custom=struct_pb2.Struct(fields={})),
        output_prefix="s3://bucket/out",
        task_execution_metadata=connector_pb2.TaskExecutionMetadata(
            task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                task_id=identifier_pb2.Identifier(name="c0")
            )
        ),
    )


@pytest.mark.slow
def test_c0_timeout_stops_the_server_as_sigterm_does(tmp_path: Path) -> None:
    argv = ["--port", "0", "--prometheus_port", "0", "--timeout", "0.5"]
    argv += ["--modules", "tests.support.sample_connectors"]
    env = {"SUPERVISOR_ENTRY_POINTS": "false"}
    with C0Process(argv, log_dir=tmp_path, env=env) as server:
        server.start()
        assert server.wait(timeout=30) == 0
        assert server.stdout_text().rstrip().endswith("stopped")
