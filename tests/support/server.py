"""Run the real server (``python -m supervisor serve``) as a child process, for tests.

    with ServerProcess(["--modules", "tests.support.sample_connectors"], log_dir=tmp) as server:
        channel = grpc.insecure_channel(server.address)
        ...
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0

``start()`` waits (polling, with a deadline) for the ``serving on HOST:PORT`` line that the
server prints once it listens; ``start()`` may be called again after the process has
exited or been killed (crash/restart tests). Each run's stdout and stderr go to their own
files in ``log_dir``. ``close()`` (and leaving the ``with`` block) kills whatever is still
running: no test leaves a server behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from .trust import TEST_META_KEY

__all__ = [
    "REPO_ROOT",
    "ServerExited",
    "ServerProcess",
    "ServerTimeout",
    "wait_for",
]

#: The repository root: the server's working directory unless told otherwise.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: How often polls check the log files and the process.
POLL_INTERVAL = 0.02
#: How long a server may take to print ``serving on`` (imports take ~1 s; CI is slower).
STARTUP_TIMEOUT = 30.0
#: How long ``close`` waits for a killed process to be reaped.
KILL_TIMEOUT = 10.0

_SERVING = re.compile(r"^serving on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)
_METRICS = re.compile(r"^metrics on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)


class ServerExited(RuntimeError):
    """The server process exited while it was expected to start or keep running."""


class ServerTimeout(TimeoutError):
    """The server did not reach the expected state before the deadline."""


def wait_for(condition: str, check: Callable[[], object], *, timeout: float) -> None:
    """Poll ``check`` until it returns true. Errors: ServerTimeout after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServerTimeout(f"timed out after {timeout:.1f}s waiting for {condition}")
        time.sleep(POLL_INTERVAL)


class ServerProcess:
    """One ``python -m supervisor serve`` child process, restartable.

    Args:
        args: arguments after ``serve``; they come after ``--host``/``--port`` so they win.
        env: environment variables set on top of this process's environment, from which
            every ``SUPERVISOR_*`` variable is removed first (so runs are reproducible).
            ``SUPERVISOR_META_KEY`` to ``TEST_META_KEY`` (``""``: the journal's key),
            ``SUPERVISOR_JOURNAL`` defaults to ``journal_url``, ``SUPERVISOR_METRICS_PORT``
            to 0 (a free port: see ``metrics_url``).
        cwd: working directory (the repository root by default, so ``tests.*`` imports).
        log_dir: where each run's ``stdout-N.log`` / ``stderr-N.log`` go.
        host: passed as ``--host`` (None: not passed; the environment or default applies).
        port: passed as ``--port``; 0 picks a free port (None: not passed).
        journal: the journal URL; by default a SQLite file in ``log_dir``, kept across
            restarts of this ServerProcess (never the working directory's default).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        log_dir: Path,
        host: str | None = "127.0.0.1",
        port: int | None = 0,
        journal: str | None = None,
    ) -> None:
        self.args = list(args)
        self.env = dict(env or {})
        self.cwd = cwd
        self.log_dir = log_dir
        self.host = host
        self.port_flag = port
        self.journal_url = journal or f"sqlite:///{log_dir / 'journal.db'}"
        self.runs = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout_path: Path | None = None
        self._stderr_path: Path | None = None
        self._listening: tuple[str, int] | None = None

    # Lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        flags: list[str] = []
        if self.host is not None:
            flags += ["--host", self.host]
        if self.port_flag is not None:
            flags += ["--port", str(self.port_flag)]
        return [sys.executable, "-m", "supervisor", "serve", *flags, *self.args]

    def spawn(self) -> None:
        """Start the process without waiting for it to listen (see ``wait_serving``).

        Errors: RuntimeError if a previous run is still alive.
        """
        if self.running:
            raise RuntimeError("server is still running: kill() or wait() for it first")
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stdout_path = self.log_dir / f"stdout-{self.runs}.log"
        self._stderr_path = self.log_dir / f"stderr-{self.runs}.log"
        self._listening = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        # Metrics on a free port, unless the test says otherwise: tests never fight over 9090.
        defaults = {
            "PYTHONUNBUFFERED": "1",
            "SUPERVISOR_JOURNAL": self.journal_url,
            "SUPERVISOR_METRICS_PORT": "0",
            "SUPERVISOR_META_KEY": TEST_META_KEY,
        }
        env.update({**defaults, **self.env})
        with (
            self._stdout_path.open("wb") as stdout,
            self._stderr_path.open("wb") as stderr,
        ):
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                # Its own session: a Ctrl-C in the terminal does not reach it, and a
                # signal we send reaches it alone.
                start_new_session=True,
            )

    def wait_serving(self, timeout: float = STARTUP_TIMEOUT) -> tuple[str, int]:
        """Wait for the ``serving on HOST:PORT`` line; return ``(host, port)``.

        Errors: ServerExited (with its stderr) if the process exits first; ServerTimeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = _SERVING.search(self.stdout_text())
            if found is not None:
                self._listening = (found["host"], int(found["port"]))
                return self._listening
            if self.returncode is not None:
                raise ServerExited(
                    f"server exited with {self.returncode} before serving:\n{self.stderr_text()}"
                )
            if time.monotonic() > deadline:
                raise ServerTimeout(
                    f"server did not print 'serving on' within {timeout:.1f}s:\n"
                    f"{self.stderr_text()}"
                )
            time.sleep(POLL_INTERVAL)

    def start(self, timeout: float = STARTUP_TIMEOUT) -> Self:
        """Spawn and wait until the server listens. Errors: as ``wait_serving``.

        A server that fails to start is killed before the error propagates.
        """
        self.spawn()
        try:
            self.wait_serving(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def send_signal(self, signum: int) -> None:
        """Errors: ServerExited if the process is not running."""
        process = self._require_process()
        if process.poll() is not None:
            raise ServerExited(f"server already exited with {process.returncode}")
        process.send_signal(signum)

    def terminate(self) -> None:
        """Send SIGTERM (the graceful shutdown)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process (if it runs) and reap it. Like a crash: nothing is flushed."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=KILL_TIMEOUT)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; return its exit code (negative: killed by a signal).

        Errors: ServerTimeout if it is still running after ``timeout`` (it is left running).
        """
        process = self._require_process()
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServerTimeout(f"server still running after {timeout:.1f}s") from None

    def stop(self, timeout: float = 15.0) -> int:
        """Ask politely (SIGTERM), wait up to ``timeout``, then kill. Return the exit code."""
        if self.running:
            self.terminate()
            try:
                return self.wait(timeout)
            except ServerTimeout:
                self.kill()
        return self._require_process().returncode

    def close(self) -> None:
        """Kill the process if it still runs. Safe to call more than once."""
        self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # State -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while running (or before the first spawn)."""
        return None if self._process is None else self._process.poll()

    @property
    def port(self) -> int:
        """The port of the current run. Errors: RuntimeError before it listens."""
        return self._require_listening()[1]

    @property
    def address(self) -> str:
        """``host:port`` a client can dial (a wildcard listen address becomes loopback)."""
        host, port = self._require_listening()
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        return f"{host}:{port}"

    @property
    def metrics_url(self) -> str:
        """``http://HOST:PORT/metrics`` of the current run (printed before ``serving on``).

        Errors: RuntimeError when the run serves no metrics or is not listening yet.
        """
        self._require_listening()
        found = _METRICS.search(self.stdout_text())
        if found is None:
            raise RuntimeError("this run serves no metrics (--metrics-port off)")
        host = found["host"]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        return f"http://{host}:{found['port']}/metrics"

    def stdout_text(self) -> str:
        """The current run's stdout so far."""
        return _read(self._stdout_path)

    def stderr_text(self) -> str:
        """The current run's stderr so far (the log goes there)."""
        return _read(self._stderr_path)

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("server was never started")
        return self._process

    def _require_listening(self) -> tuple[str, int]:
        if self._listening is None:
            raise RuntimeError("server is not listening yet: call start() or wait_serving()")
        return self._listening


def _read(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_bytes().decode("utf-8", errors="replace")
