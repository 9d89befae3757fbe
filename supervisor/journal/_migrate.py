"""Schema migrations, run programmatically with Alembic against a URL or an engine.

The scripts live in ``migrations/`` at the top of the repository; a wheel carries a copy
at ``supervisor/_migrations``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import alembic.command
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from ._engine import create_engine
from ._errors import JournalError

__all__ = [
    "current_revision",
    "downgrade",
    "head_revision",
    "migrations_dir",
    "upgrade",
    "upgrade_engine",
]

_T = TypeVar("_T")

_PG_MIGRATION_LOCK = 0x6A6F75726E616C  # "journal": replicas starting together migrate in turn


def migrations_dir() -> Path:
    """The Alembic script directory: the repository's, else the copy packaged in the wheel."""
    source = Path(__file__).parents[2] / "migrations"
    if (source / "env.py").is_file():
        return source
    return Path(__file__).parents[1] / "_migrations"


def head_revision() -> str:
    """The revision the latest migration leaves the schema at."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise JournalError(f"no migrations found in {migrations_dir()}")
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the journal at ``url`` up to ``revision``, creating its tables when empty.

    Errors: ``JournalError`` when the database cannot be reached or migrated.
    """
    with _engine(url) as engine:
        upgrade_engine(engine, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the journal at ``url`` down to ``revision``; ``"base"`` drops every table.

    Errors: ``JournalError`` when the database cannot be reached or migrated.
    """
    with _engine(url) as engine:
        _in_transaction(engine, lambda c: alembic.command.downgrade(_config(c), revision))


def current_revision(url: str) -> str | None:
    """The revision the journal at ``url`` is at; ``None`` for an empty database.

    Errors: ``JournalError`` when the database cannot be reached.
    """
    with _engine(url) as engine:
        return current_revision_engine(engine)


def upgrade_engine(engine: sa.Engine, revision: str = "head") -> None:
    """``upgrade`` on an engine the caller owns."""
    _in_transaction(engine, lambda c: alembic.command.upgrade(_config(c), revision))


def current_revision_engine(engine: sa.Engine) -> str | None:
    """``current_revision`` on an engine the caller owns."""
    return _in_transaction(engine, lambda c: MigrationContext.configure(c).get_current_revision())


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _in_transaction(engine: sa.Engine, work: Callable[[sa.Connection], _T]) -> _T:
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            return work(connection)
    except (sa.exc.SQLAlchemyError, CommandError) as exc:
        raise JournalError(f"journal migration failed: {exc}") from exc


@contextmanager
def _engine(url: str) -> Iterator[sa.Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
