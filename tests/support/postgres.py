"""A throwaway PostgreSQL server for tests, started from the installed server binaries.

The server refuses to run as root, so as root every server command runs as the ``postgres``
OS user (``runuser``), in a temporary directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = ["PostgresServer", "find_bin_dir", "fresh_database", "running_postgres"]

START_TIMEOUT = 30.0
"""Seconds to wait for a new server to accept connections."""

_POLL_INTERVAL = 0.05
_OS_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest version), or ``None``."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


class PostgresServer:
    """One cluster in a temporary directory, listening on 127.0.0.1 and a free port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="journal-pg-"))
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database, as the ``postgres`` superuser."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """initdb, start, and wait until the server accepts connections.

        Errors: ``RuntimeError`` (with the server log) if it does not come up in time.
        """
        if self._as_postgres:
            user = pwd.getpwnam(_OS_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        data = self.root / "data"
        cluster = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]
        self._run("initdb", "-D", str(data), *cluster)
        self.resume()

    def pause(self) -> None:
        """Stop the server at once (as a crash would), keeping its data for ``resume``."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Start the (initialised) server on its port and wait until it accepts connections."""
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port} -F"  # -F: no fsync
        log = str(self.root / "log")
        data = str(self.root / "data")
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start")
        self._wait_accepting()

    def stop(self) -> None:
        """Stop the server at once and delete its directory."""
        try:
            data = self.root / "data"
            if (data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", _OS_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{done.stderr}")

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg.connect(_conninfo(self.port, "postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    log = (self.root / "log").read_text(errors="replace")
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
            time.sleep(_POLL_INTERVAL)


@contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """A started server, stopped and removed on exit."""
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def fresh_database(port: int) -> Iterator[str]:
    """A new, empty database on the server at ``port``; its SQLAlchemy URL. Dropped on exit."""
    name = f"test_{uuid.uuid4().hex}"
    _admin(port, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"
    finally:
        _admin(
            port, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _admin(port: int, statement: sql.Composed) -> None:
    with psycopg.connect(_conninfo(port, "postgres"), autocommit=True) as connection:
        connection.execute(statement)


def _conninfo(port: int, dbname: str) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname={dbname}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _version(bin_dir: str) -> tuple[int, ...]:
    version = Path(bin_dir).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())
