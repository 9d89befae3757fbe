"""Mistakes a user can make, as one line on stderr and an exit code.

A command catches what it knows a user can cause (a port in use, a journal URL that is not
one, a database that cannot be reached, a read-only directory) and prints one line naming
what is wrong and what to do; ``--log-level DEBUG`` adds the traceback. Anything else is a
bug, and keeps its traceback. Trio wraps errors in exception groups: ``explain`` looks at
the leaves.

Exit codes (docs/operations.md lists them): 0 done; 1 not found / not healthy / the task
failed; 2 bad usage or settings (flags, journal URL, connector modules); 3 the journal
cannot be opened, read or written; 4 a port cannot be bound; 130 interrupted.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from ..journal import JournalError, JournalURLError, safe_url, sqlite_path

__all__ = [
    "EXIT_JOURNAL",
    "EXIT_NOT_FOUND",
    "EXIT_PORT",
    "EXIT_USAGE",
    "UserError",
    "explain",
    "journal_message",
    "port_message",
    "report",
]

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_JOURNAL = 3
EXIT_PORT = 4


class UserError(Exception):
    """A mistake with its one-line message and exit code, raised by the CLI itself."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def report(exc: BaseException, *, debug: bool, journal: str | None = None) -> int | None:
    """Print ``exc`` as one line if a user caused it, and return the exit code; else None.

    With ``debug`` the traceback comes first. ``journal``: the URL the command used.
    """
    explained = explain(exc, journal)
    if explained is None:
        return None
    message, code = explained
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def explain(exc: BaseException, journal: str | None = None) -> tuple[str, int] | None:
    """The one-line message and exit code for ``exc`` (or the first leaf of a group that
    a user caused); None for an error no user causes (a bug: keep its traceback)."""
    for leaf in _leaves(exc):
        if isinstance(leaf, UserError):
            return str(leaf), leaf.exit_code
        if isinstance(leaf, JournalURLError):
            return str(leaf), EXIT_USAGE
        if isinstance(leaf, JournalError):
            return journal_message(leaf, journal), EXIT_JOURNAL
    return None


def journal_message(exc: JournalError, url: str | None) -> str:
    """``exc`` in one line: the database's own first line, and what to do about it."""
    where = f"journal {safe_url(url)}: " if url else ""
    cause = _db_cause(exc)
    path = sqlite_path(url) if url else None
    if path is not None and (cause is not None or isinstance(exc.__cause__, OSError)):
        read_only = _read_only_reason(path)
        if read_only:
            return (
                f"{where}{read_only}: serve needs to write its journal there "
                "(journal ls/show/stats only read): pick a writable --journal"
            )
    if cause is None:
        return where + _first_line(str(exc))
    text = _first_line(str(getattr(cause, "orig", None) or cause))
    if path is not None:
        return f"{where}{text}"
    if isinstance(cause, sa.exc.OperationalError):
        return f"{where}cannot reach the database: {text} (is it running? check --journal)"
    return f"{where}{text}"


def port_message(what: str, host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve {what} on {host}:{port}: the port is in use "
            f"(another server?): stop it, or pick another port"
        )
    return f"cannot serve {what} on {host}:{port}: {exc.strerror or exc}"


def _read_only_reason(path: Path) -> str | None:
    """Why SQLite cannot write at ``path``, if the reason is a read-only place."""
    directory = path.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only filesystem"
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return f"directory {directory} is read-only for this user"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is read-only for this user"
    return None


def _db_cause(exc: BaseException) -> BaseException | None:
    seen: BaseException | None = exc.__cause__
    while seen is not None:
        if isinstance(seen, sa.exc.SQLAlchemyError):
            return seen
        seen = seen.__cause__
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else text
    # SQLAlchemy appends "[SQL: ...]" and "(Background on this error at: ...)".
    return first.split(" [SQL:")[0].split(" (Background on this error")[0]


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
