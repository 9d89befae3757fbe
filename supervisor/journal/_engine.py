"""Engines for the journal: URL normalisation and the per-dialect connection setup."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ._errors import JournalError, JournalURLError

__all__ = [
    "READ_CONCURRENCY",
    "create_engine",
    "create_read_only_engine",
    "is_writable_dir",
    "normalize_url",
    "safe_url",
    "sqlite_path",
]

_USAGE = "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB"

READ_CONCURRENCY = 8
"""Journal reads running at once, each on its own connection; the writer has one more."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite connection waits for another process's write lock."""

READ_ONLY_STATEMENT_TIMEOUT_MS = 30_000
"""PostgreSQL: a read-only (operator) query never runs longer than this."""

_POSTGRES_DRIVER = "postgresql+psycopg"
_POSTGRES_ALIASES = frozenset({"postgres", "postgresql", "postgres+psycopg"})


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; PostgreSQL URLs of any spelling get the psycopg (3) driver.

    Errors: ``JournalURLError`` (a ``ValueError``) for text that is not a URL, for in-memory
    SQLite (each pooled connection would see its own empty database: use a file) and for
    databases other than SQLite and PostgreSQL.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise JournalURLError(f"not a journal URL: {str(url)!r}: {_USAGE}") from None
    if parsed.drivername in _POSTGRES_ALIASES:
        parsed = parsed.set(drivername=_POSTGRES_DRIVER)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise JournalURLError("in-memory SQLite is not supported as a journal: use a file")
    if backend not in ("sqlite", "postgresql"):
        raise JournalURLError(f"unsupported journal database {backend!r}: {_USAGE}")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite journal URL (as ``create_engine`` made it); None for others
    (and for text that is no journal URL)."""
    try:
        parsed = normalize_url(url)
    except JournalURLError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = (parsed.database or "").removeprefix("file:").split("?", 1)[0]
    return Path(database).absolute()


def create_engine(url: str | URL, *, connections: int = READ_CONCURRENCY + 1) -> sa.Engine:
    """A sync engine for ``url`` holding at most ``connections`` connections.

    SQLite files get WAL, ``synchronous=FULL`` and a busy timeout. A missing SQLite file
    is created here, once: the engine's connections open it with ``mode=rw``, so a file
    deleted later is an error, never a new empty journal. So is the file's own directory
    (``.supervisor/`` of the default journal), when its parent exists: a path in missing
    directories (a typo) is an error, not a new tree of directories.

    Errors: ``JournalError`` when the directories are missing or the file cannot be made.
    """
    parsed = normalize_url(url)
    pool: dict[str, Any] = {"pool_size": connections, "max_overflow": 0}
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, **pool)
    database = parsed.database or ""
    if not database.startswith("file:"):
        path = Path(database).absolute()
        if not path.parent.parent.is_dir():
            raise JournalError(
                f"no directory {path.parent.parent} for the journal's directory: create it, "
                "or pick another --journal path"
            )
        try:
            path.parent.mkdir(exist_ok=True)
            path.touch(exist_ok=True)  # an empty file is an empty SQLite database
        except OSError as exc:
            raise JournalError(f"cannot create {path}: {exc.strerror}") from exc
        parsed = parsed.set(database=f"file:{path}").update_query_dict(
            {"mode": "rw", "uri": "true"}
        )
    engine = sa.create_engine(parsed, **pool)
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def create_read_only_engine(url: str | URL) -> sa.Engine:
    """An engine that can only read the journal at ``url``: for operators' tools.

    SQLite opens the file with ``mode=ro`` (never created, never switched to WAL: in WAL
    mode, which the server sets, readers never block its writes), and ``immutable=1`` when
    its directory cannot be written (``is_writable_dir``); PostgreSQL sessions are
    ``default_transaction_read_only`` with a statement timeout.

    Errors: ``JournalError`` when a SQLite file does not exist; ``ValueError`` as
    ``normalize_url``.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        options = (
            "-c default_transaction_read_only=on"
            f" -c statement_timeout={READ_ONLY_STATEMENT_TIMEOUT_MS}"
        )
        return sa.create_engine(
            parsed,
            poolclass=sa.NullPool,
            connect_args={"options": options, "application_name": "supervisor-journal-cli"},
        )
    database = parsed.database or ""
    query = {"mode": "ro", "uri": "true"}
    if not database.startswith("file:"):
        path = Path(database).resolve()
        if not path.is_file():
            raise JournalError(f"no journal at {path}")
        database = f"file:{path}"
        if not is_writable_dir(path.parent) and not path.with_name(path.name + "-shm").exists():
            # A WAL reader needs a -shm file, and cannot create one here: where nothing can
            # be written (a backup, a read-only volume) no server writes either, so the
            # file cannot change while we read it. (With -wal and -shm present, mode=ro
            # reads them, uncheckpointed writes included.)
            query["immutable"] = "1"
    ro = parsed.set(database=database).update_query_dict(query)
    engine = sa.create_engine(ro, poolclass=sa.NullPool)
    sa.event.listen(engine, "connect", _sqlite_connect_read_only)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def is_writable_dir(directory: Path) -> bool:
    """Whether files can be made in ``directory``: not on a read-only filesystem, and
    writable for this user (root passes any mode bits; a read-only mount stops it too)."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def safe_url(url: str | URL) -> str:
    """``url`` without its password, fit for logs and messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _sqlite_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (_sqlite_begin): the sqlite3 module's legacy transaction
    # control would run SELECTs and DDL outside any transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # ``writing``: BEGIN IMMEDIATE, the write lock first (waited for under the busy timeout).
    # A deferred transaction that reads, then writes after another connection committed (a
    # replica's heartbeat beside the writer) would fail at once with "database is locked".
    immediate = connection.get_execution_options().get("writing", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: on SQLite it takes the write lock as it begins."""
    with engine.connect().execution_options(writing=True) as connection, connection.begin():
        yield connection
