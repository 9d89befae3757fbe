"""The server a recovery run faults: one it starts itself, or a deployment run by commands.

``Served`` runs ``python -m supervisor serve`` as a child on a fixed port (so the client's
channel reconnects after each restart) and kills it with SIGKILL or SIGTERM; ``Deployed``
runs the user's ``--kill-cmd`` / ``--start-cmd`` (``kubectl delete pod ...``) and lets the
deployment bring the server back. Both run database outages with ``--db-stop-cmd`` /
``--db-start-cmd``. A fault is ``inflict`` (returns once the server or database is gone)
then ``restore``. Every method blocks: callers run them in a worker thread.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Deployed", "Served", "TargetError", "free_port"]

#: How long a started server may take to print ``serving on``.
START_TIMEOUT = 60.0
#: How long a SIGTERMed server may take to exit before it is killed.
TERM_TIMEOUT = 30.0
_POLL = 0.05
_SERVING = re.compile(r"^serving on \S+:\d+$", re.MULTILINE)


class TargetError(RuntimeError):
    """The server (or a user command) did not do what it must."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _shell(command: str, what: str) -> None:
    done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TargetError(f"{what} {command!r} exited {done.returncode}: {done.stderr.strip()}")


class _Database:
    def __init__(self, stop_cmd: str | None, start_cmd: str | None) -> None:
        self.stop_cmd = stop_cmd
        self.start_cmd = start_cmd

    def stop_database(self) -> None:
        if not self.stop_cmd or not self.start_cmd:
            raise TargetError("a db fault needs --db-stop-cmd and --db-start-cmd")
        _shell(self.stop_cmd, "--db-stop-cmd")

    def start_database(self, outage: float) -> None:
        assert self.start_cmd is not None
        time.sleep(outage)
        _shell(self.start_cmd, "--db-start-cmd")


class Served(_Database):
    """``python -m supervisor serve ARGS`` on 127.0.0.1 and a fixed port, restartable."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        db_stop_cmd: str | None = None,
        db_start_cmd: str | None = None,
    ) -> None:
        super().__init__(db_stop_cmd, db_start_cmd)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.log_dir = log_dir
        self.runs = 0
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        base = ["--host", "127.0.0.1", "--port", str(self.port), "--metrics-port", "off"]
        return [sys.executable, "-m", "supervisor", "serve", *base, *self.args]

    def start(self) -> None:
        """Errors: TargetError (with the server's stderr) if it exits or does not listen."""
        self.runs += 1
        out = self.log_dir / f"server-{self.runs}.out"
        err = self.log_dir / f"server-{self.runs}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self._process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _SERVING.search(out.read_text(errors="replace")):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = err.read_text(errors="replace").strip().splitlines()[-5:]
                raise TargetError(f"the server did not start (log {err}):\n" + "\n".join(tail))
            time.sleep(_POLL)

    def inflict(self, kind: str) -> None:
        """Inflict ``kind`` (kill, term, db); return once the server (or database) is gone."""
        if kind == "db":
            self.stop_database()
        elif kind == "kill":
            self.kill()
        else:
            self.terminate()

    def restore(self, kind: str, outage: float) -> None:
        """Bring back what ``inflict`` took away."""
        if kind == "db":
            self.start_database(outage)
        else:
            self.start()

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=TERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TargetError(f"the server ignored SIGTERM for {TERM_TIMEOUT:g}s") from None

    def close(self) -> None:
        self.terminate()


class Deployed(_Database):
    """A server somebody else runs: faults are the user's commands."""

    def __init__(
        self,
        address: str,
        *,
        kill_cmd: str | None,
        start_cmd: str | None,
        db_stop_cmd: str | None = None,
        db_start_cmd: str | None = None,
    ) -> None:
        super().__init__(db_stop_cmd, db_start_cmd)
        self.address = address
        self.kill_cmd = kill_cmd
        self.start_cmd = start_cmd

    def start(self) -> None:
        """Nothing to start: the deployment runs."""

    def inflict(self, kind: str) -> None:
        if kind == "db":
            self.stop_database()
            return
        if not self.kill_cmd:
            raise TargetError("a kill fault on a deployment needs --kill-cmd")
        _shell(self.kill_cmd, "--kill-cmd")

    def restore(self, kind: str, outage: float) -> None:
        if kind == "db":
            self.start_database(outage)
        elif self.start_cmd:
            _shell(self.start_cmd, "--start-cmd")

    def close(self) -> None:
        """The deployment stays as it is."""
