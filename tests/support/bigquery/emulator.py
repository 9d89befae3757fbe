"""Run bqemulator (a BigQuery REST emulator on DuckDB) as a child process, for tests.

    with running_emulator(workdir) as emulator:
        job = emulator_job(emulator.url, "flyte_...")

The emulator lives in a virtualenv of its own (it needs protobuf<7; the project needs 7):
``$BQEMULATOR_PYTHON``, else ``bqemulator/bin/python`` inside the virtualenv running the
tests (``.venv/bqemulator``: ignored by git, gone with ``.venv``), made with
``emulator-requirements.txt`` beside this file. It runs ``INSTALL spatial`` at start and
has no network here, so the child first installs DuckDB's spatial extension from the
``duckdb-extension-spatial`` wheel into its own HOME (``workdir``): nothing is written to
the user's HOME. Errors: EmulatorUnavailable, with the reason (and the emulator's log), when
it cannot start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

__all__ = [
    "PROJECT",
    "SHORT_RETRY",
    "Emulator",
    "EmulatorUnavailable",
    "emulator_client",
    "emulator_job",
    "running_emulator",
]

#: The emulator's default project: the one every test uses.
PROJECT = "test-project"
#: How long the emulator may take to answer /healthz (about 1.5 s here; CI may be slower).
STARTUP_TIMEOUT = 60.0
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 10.0
#: For the tests' own calls to the emulator: never the library's 600 s.
SHORT_RETRY = bigquery.DEFAULT_RETRY.with_timeout(5.0)
#: The interpreter of the emulator's virtualenv: this variable, else DEFAULT_PYTHON.
PYTHON_ENV = "BQEMULATOR_PYTHON"
DEFAULT_PYTHON = Path(sys.prefix) / "bqemulator" / "bin" / "python"
REQUIREMENTS = Path(__file__).with_name("emulator-requirements.txt")

# Runs in the child: the spatial extension from its wheel, then the emulator's CLI.
_LAUNCH = """
import sys
import duckdb, duckdb_extensions
duckdb_extensions.import_extension("spatial", con=duckdb.connect())
from bqemulator.cli import main
main(sys.argv[1:])
"""


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed, or did not start."""


@dataclass(frozen=True)
class Emulator:
    url: str
    project: str
    log: Path


def emulator_client(url: str, project: str = PROJECT) -> bigquery.Client:
    """A real google-cloud-bigquery client for ``url``, with anonymous credentials."""
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )


def emulator_job(url: str, job_id: str) -> bigquery.QueryJob:
    """A query job as the emulator itself reports it (behind the proxy's back).

    Errors: google.api_core.exceptions.NotFound when the emulator never saw the job.
    """
    job = emulator_client(url).get_job(job_id, retry=SHORT_RETRY, timeout=5)
    assert isinstance(job, bigquery.QueryJob)
    return job


@contextlib.contextmanager
def running_emulator(workdir: Path, project: str = PROJECT) -> Iterator[Emulator]:
    """Start the emulator on a free port; stop it (SIGTERM, then SIGKILL) on exit."""
    python = Path(os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)
    if not python.exists():
        venv = python.parent.parent
        raise EmulatorUnavailable(
            f"no emulator virtualenv at {venv} (set {PYTHON_ENV}, or make it: "
            f"python3 -m venv {venv} && {venv}/bin/pip install -r {REQUIREMENTS})"
        )
    port = _free_port()
    log = workdir / "bqemulator.log"
    command = [
        *(str(python), "-c", _LAUNCH),
        *("start", "--rest-port", str(port), "--grpc-port", "0"),
        *("--project", project, "--log-level", "warning"),
    ]
    env = {**os.environ, "HOME": str(workdir), "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log)
        yield Emulator(url=url, project=project, log=log)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # The spatial extension is 80 MB: keep no copy of it in pytest's kept temp dirs.
        shutil.rmtree(workdir / ".duckdb", ignore_errors=True)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorUnavailable(f"exited with {process.returncode}:\n{_tail(log)}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/healthz", timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(POLL_INTERVAL)
    raise EmulatorUnavailable(f"not healthy after {STARTUP_TIMEOUT:g}s:\n{_tail(log)}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
