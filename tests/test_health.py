"""``python -m supervisor health``: exit 0 only when the gRPC health service says SERVING.

Every check runs the command as its own process, as a container's health check does (and
because grpclib's health messages must stay out of this test process: see
``tests/support/health_server.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from supervisor.cli import split_address
from supervisor.edge import LIVENESS_SERVICE
from tests.support.operators import SAMPLE_ARGS, run_cli
from tests.support.server import REPO_ROOT, ServerProcess

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def health_service(status: str) -> Iterator[str]:
    """A health service answering ``status`` for the whole server; yields its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.health_server", status],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "listening on PORT", or "" if it died
        assert line.startswith("listening on "), line
        yield f"127.0.0.1:{line.split()[-1]}"
    finally:
        process.kill()
        process.wait(timeout=STARTUP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


def test_serving_is_healthy() -> None:
    with health_service("SERVING") as address:
        result = run_cli(["health", "--address", address])
    assert (result.returncode, result.stdout.strip()) == (0, f"{address}: SERVING")


@pytest.mark.parametrize("status", ["NOT_SERVING", "UNKNOWN"])
def test_anything_but_serving_is_unhealthy(status: str) -> None:
    with health_service(status) as address:
        result = run_cli(["health", "--address", address])
    assert (result.returncode, result.stderr.strip()) == (1, f"{address}: {status}")


def test_nobody_listening_is_unhealthy() -> None:
    result = run_cli(["health", "--address", f"127.0.0.1:{_free_port()}", "--timeout", "2"])
    assert result.returncode == 1
    assert "ConnectionRefusedError" in result.stderr


def test_a_running_server_is_healthy_at_its_port(tmp_path: Path) -> None:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path) as server:
        server.start()
        environment = {**os.environ, "SUPERVISOR_PORT": str(server.port)}
        result = run_cli(["health"], env=environment)  # 127.0.0.1 and SUPERVISOR_PORT
        liveness = run_cli(["health", "--service", LIVENESS_SERVICE], env=environment)
        unknown = run_cli(["health", "--service", "no.Such"], env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"127.0.0.1:{server.port}: SERVING"
    assert (liveness.returncode, liveness.stdout.strip()) == (0, result.stdout.strip())
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stderr, unknown.stderr


@pytest.mark.parametrize(
    ("address", "parsed"),
    [("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:9", ("::1", 9)), ("h:1", ("h", 1))],
)
def test_addresses(address: str, parsed: tuple[str, int]) -> None:
    assert split_address(address) == parsed


@pytest.mark.parametrize("address", ["8000", "host", ":80", "host:port"])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="not HOST:PORT"):
        split_address(address)
