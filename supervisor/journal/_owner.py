"""One owner per SQLite journal: an OS lock that a second process cannot take.

SQLite has no replicas: two servers on one file would both resume and poll every job, and
either could cancel the other's. So the process that writes a SQLite journal holds an
exclusive ``flock`` on a sidecar file, ``<journal>.owner``, for as long as it has the journal
open, and writes who it is there (pid, host, since when) for the message a second process
prints. The kernel drops the lock when the owner exits, kill -9 included: there is no lease
to expire and nothing to clean up. A stale ``.owner`` file from a dead owner is harmless; a
lock is taken, not a file created.

A second process is refused (``JournalBusy``), or, as a standby, waits for the lock and
then carries on as the owner.

Limits: ``flock`` is as good as the filesystem's locking; on a network filesystem that does
not implement it, two hosts could each believe they own the file (SQLite's own locking has
the same limit). Use PostgreSQL for more than one process.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from ._errors import JournalError

__all__ = ["JournalBusy", "Owner", "OwnerLock"]

#: How often a standby tries the lock again.
STANDBY_RETRY = 0.5


@dataclass(frozen=True)
class Owner:
    """Who holds a journal, as its owner file says."""

    pid: int | None
    host: str
    since: str

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        return f"{pid} on host {self.host} (since {self.since})"


class JournalBusy(JournalError):
    """Another process owns this SQLite journal."""

    def __init__(self, path: Path, owner: Owner) -> None:
        super().__init__(
            f"journal {path} is in use by {owner.describe()}: one server per SQLite journal "
            "(stop that one, run this one with --standby to take over when it stops, "
            "or use PostgreSQL for replicas)"
        )
        self.owner = owner


class OwnerLock:
    """The exclusive lock on ``<journal>.owner``; released by ``release`` or by exiting."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.path = journal.with_name(journal.name + ".owner")
        self._fd: int | None = None

    def try_acquire(self) -> Owner | None:
        """Take the lock and write who we are; the current owner if someone else holds it.

        Errors: ``JournalError`` when the owner file cannot be opened at all.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            return owner
        except BaseException:
            os.close(fd)
            raise
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
        self._fd = fd
        return None

    def acquire(self) -> None:
        """Take the lock. Errors: ``JournalBusy`` when another process holds it."""
        owner = self.try_acquire()
        if owner is not None:
            raise JournalBusy(self.journal, owner)

    async def acquire_waiting(self, waiting: Callable[[Owner], None]) -> None:
        """Take the lock, waiting as long as another process holds it (a standby).

        ``waiting(owner)`` is called once, when the first try finds an owner.

        Cancellation: safe; the lock is not taken then.
        """
        owner = self.try_acquire()
        if owner is not None:
            waiting(owner)
        while owner is not None:
            await trio.sleep(STANDBY_RETRY)
            owner = self.try_acquire()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_owner(fd: int) -> Owner:
    try:
        fields = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid = fields.get("pid")
        return Owner(
            pid=pid if isinstance(pid, int) else None,
            host=str(fields.get("host", "?")),
            since=str(fields.get("since", "?")),
        )
    except (OSError, ValueError, AttributeError):
        return Owner(pid=None, host="?", since="?")
