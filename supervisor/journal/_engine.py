"""Engines for the journal: URL normalisation and the per-dialect connection setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ._errors import JournalError

__all__ = [
    "READ_CONCURRENCY",
    "create_engine",
    "create_read_only_engine",
    "normalize_url",
    "safe_url",
    "sqlite_path",
]

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

    Errors: ``ValueError`` for in-memory SQLite (each pooled connection would see its own
    empty database: use a file) and for databases other than SQLite and PostgreSQL.
    """
    parsed = sa.make_url(url)
    if parsed.drivername in _POSTGRES_ALIASES:
        parsed = parsed.set(drivername=_POSTGRES_DRIVER)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("in-memory SQLite is not supported as a journal: use a file")
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported journal database {backend!r}: use SQLite or PostgreSQL")
    return parsed


def create_engine(url: str | URL, *, connections: int = READ_CONCURRENCY + 1) -> sa.Engine:
    """A sync engine for ``url`` holding at most ``connections`` connections.

    SQLite files get WAL, ``synchronous=FULL`` and a busy timeout. A missing SQLite file
    (and its parent directory) is created here, once: the engine's connections open it
    with ``mode=rw``, so a file deleted later is an error, never a new empty journal.
    """
    parsed = normalize_url(url)
    pool: dict[str, Any] = {"pool_size": connections, "max_overflow": 0}
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, **pool)
    database = parsed.database or ""
    if not database.startswith("file:"):
        path = Path(database).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)  # an empty file is an empty SQLite database
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
    mode, which the server sets, readers never block its writes); PostgreSQL sessions are
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
    if not database.startswith("file:"):
        path = Path(database).resolve()
        if not path.is_file():
            raise JournalError(f"no journal at {path}")
        database = f"file:{path}"
    ro = parsed.set(database=database).update_query_dict({"mode": "ro", "uri": "true"})
    engine = sa.create_engine(ro, poolclass=sa.NullPool)
    sa.event.listen(engine, "connect", _sqlite_connect_read_only)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite journal URL (as ``create_engine`` made it); None for others."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    database = parsed.database.removeprefix("file:").split("?", 1)[0]
    return Path(database).absolute()


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
    connection.exec_driver_sql("BEGIN")
