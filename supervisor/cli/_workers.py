"""``serve --workers N``: N replicas on one machine, one port, one PostgreSQL journal.

A Python process runs its event loop on one core. To use more, ``serve --workers N``
starts N ``serve`` processes (each a replica: see ``service._replica``) on the same port
with ``SO_REUSEPORT``: the kernel spreads incoming connections over them, and the journal
spreads the jobs (each job belongs to the replica that received its CreateTask; any replica
answers any call). This process only supervises them:

- it reserves the port first (a bound socket, never listening: ``--port 0`` becomes one
  real port all workers share), then starts the workers with the same flags and
  environment, and ``--port`` that port, ``--workers 1``, and metrics port ``M + i``
  (worker i; the journal web view only on worker 0);
- it prints each worker's output prefixed ``worker i:``, and ``serving on HOST:PORT`` (as
  one server does) once every worker serves;
- SIGTERM or SIGINT is passed on to every worker (each drains and releases its jobs to
  the others as it stops); it exits once all have, with the worst exit status;
- a worker that dies is started again (its jobs are taken over by its siblings at once:
  the same node sees its pid gone). A worker that fails before it ever served stops them
  all: a configuration error is one line, not a restart loop.

A SQLite journal has one owner process: ``--workers`` above 1 needs PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from ..journal import sqlite_path
from ._errors import EXIT_USAGE, UserError
from ._settings import Settings
from ._socket import bind_port

__all__ = ["REUSE_PORT_ENV", "run_workers"]

REUSE_PORT_ENV = "SUPERVISOR_REUSE_PORT"
"""Set (to the worker's index) in each worker's environment: bind with ``SO_REUSEPORT``."""

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
_POLL = 0.2  # seconds between two looks at the workers


@dataclass
class _Worker:
    index: int
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    serving: threading.Event = field(default_factory=threading.Event)
    served_once: bool = False

    def start(self) -> None:
        self.serving.clear()
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C reaches us; we pass it on
        )
        threading.Thread(target=self._relay, daemon=True, name=f"worker-{self.index}").start()

    def _relay(self) -> None:
        process = self.process
        assert process is not None
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            print(f"worker {self.index}: {line}", flush=True)
            if line.startswith("serving on "):
                self.served_once = True
                self.serving.set()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)


def run_workers(settings: Settings, argv: Sequence[str]) -> int:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT. ``argv``: serve's flags."""
    if sqlite_path(settings.journal) is not None:
        print(
            f"error: --workers {settings.workers} needs a PostgreSQL journal: a SQLite journal"
            " has one owner process (use --workers 1, or a PostgreSQL --journal)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        reserved = reserve_port(settings.host, settings.port)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    with reserved:
        port = reserved.getsockname()[1]
        workers = [
            _Worker(i, _command(settings, argv, port, i), {**os.environ, REUSE_PORT_ENV: str(i)})
            for i in range(settings.workers)
        ]
        return _supervise(workers, settings.host, port)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, never listened on: it holds
    the port (``0``: picks one) for the workers, which bind it too. Errors: UserError."""
    return bind_port(host, port, reuse_address=False, reuse_port=True)


def _command(settings: Settings, argv: Sequence[str], port: int, index: int) -> list[str]:
    """The worker's command line: serve's flags, then what differs per worker (last wins)."""
    metrics = settings.metrics_port
    metrics_flag = "off" if metrics is None else str(metrics + index if metrics else 0)
    overrides = ["--workers", "1", "--port", str(port), "--metrics-port", metrics_flag]
    if index > 0:
        overrides += ["--ui", "false"]
    return [sys.executable, "-m", "supervisor", "serve", *argv, *overrides]


def _supervise(workers: list[_Worker], host: str, port: int) -> int:
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for worker in workers:
            worker.signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        announced = False
        codes: dict[int, int] = {}
        while True:
            if not announced and all(w.serving.is_set() for w in workers):
                print(f"{len(workers)} workers serving", flush=True)
                print(f"serving on {host}:{port}", flush=True)  # parseable, as one server prints
                announced = True
            for worker in workers:
                assert worker.process is not None
                code = worker.process.poll()
                if code is None or worker.index in codes:
                    continue
                if stopping.is_set():
                    codes[worker.index] = code
                elif not worker.served_once:
                    print(
                        f"worker {worker.index} exited with status {code} before it served:"
                        " stopping the others",
                        file=sys.stderr,
                        flush=True,
                    )
                    stop(signal.SIGTERM, None)
                    codes[worker.index] = code
                else:
                    print(
                        f"worker {worker.index} exited with status {code}; starting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(RESTART_DELAY)
                    worker.start()
            if len(codes) == len(workers):
                break
            time.sleep(_POLL)
        worst = max(codes.values(), default=0)
        if worst == 0:
            print("stopped", flush=True)
        return worst
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
