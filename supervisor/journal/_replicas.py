"""The replicas' SQL: registration, heartbeats, takeover, release and delete intents.

Synchronous operations on the journal's engine, run in worker threads by the Trio side
(``ReplicaJournal``). Each is one transaction of its own, outside the writer's batches: they
change only the owner, the epoch and (a delete intent) the delete state of rows, which the
writer's fenced puts then respect (``Store``: a put applies only while the row's owner and
epoch are the ones its record carries).

Times of the ``replicas`` table come from the database clock on PostgreSQL (every replica
reads the same clock, so "dead" means the same to all of them); on SQLite, which has one
owner process (``OwnerLock``), from this process's clock.

Takeover is one statement on PostgreSQL, ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP
LOCKED LIMIT n)``: concurrent adopters lock disjoint rows and never wait for each other, so
a dead replica's jobs spread over the survivors. The same transaction appends one event per
job adopted, naming the replica it came from.

A delete intent journalled by a replica that does not own the job bumps the epoch (the
owner's actor is fenced out at its next write, and restarts from the row) and notifies the
owner on ``CHANNEL`` (``LISTEN/NOTIFY``, delivered on commit).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._engine import writing
from ._records import DeleteState, JobRecord
from ._rows import RECORD_FIELDS, Sql, record_of_tuple
from ._rules import CANCELLABLE, UNFINISHED

__all__ = ["CHANNEL", "PRUNE_AFTER", "Adopted", "ReplicaStore"]

CHANNEL = "supervisor_replicas"
"""The NOTIFY channel: payloads ``delete <owner> <job_id>`` and ``released <replica>``."""

PRUNE_AFTER = 3600.0
"""Seconds after its last heartbeat that a dead replica's row, owning no unfinished job, is
deleted."""

_PG_NOW = "extract(epoch from clock_timestamp())::float8"
_FIELDS = ", ".join(f"jobs.{name}" for name in RECORD_FIELDS)


@dataclass(frozen=True, slots=True)
class Adopted:
    """A job taken over: its row as now owned, and who owned it before (None: nobody)."""

    record: JobRecord
    previous: str | None


class ReplicaStore:
    """The replica operations on one engine (PostgreSQL or SQLite)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._sql = Sql(engine.dialect.name)
        self._mark = self._sql.mark

    # -- clock -----------------------------------------------------------------------------

    def _now(self, connection: sa.Connection) -> float:
        if not self.postgres:
            return time.time()
        return float(connection.exec_driver_sql(f"SELECT {_PG_NOW}").scalar_one())

    # -- membership ------------------------------------------------------------------------

    def register(self, replica: str, host: str, pid: int) -> float:
        """Insert this replica's row; the journal's time of it."""
        with writing(self.engine) as connection:
            now = self._now(connection)
            connection.execute(
                sa.text(
                    "INSERT INTO replicas (id, host, pid, started, heartbeat, node)"
                    " VALUES (:id, :host, :pid, :now, :now, :node)"
                ),
                {"id": replica, "host": host, "pid": pid, "now": now, "node": this_node()},
            )
        _HERE.add(replica)
        return now

    def heartbeat(self, replica: str) -> bool:
        """Stamp this replica's heartbeat; False when its row is gone (it was released or
        pruned: it must not carry on under this id)."""
        with writing(self.engine) as connection:
            now = self._now(connection)
            result = connection.execute(
                sa.text("UPDATE replicas SET heartbeat = :now WHERE id = :id"),
                {"id": replica, "now": now},
            )
            return result.rowcount == 1

    # -- takeover --------------------------------------------------------------------------

    def _dead(
        self, connection: sa.Connection, replica: str, dead_after: float, everyone_else: bool
    ) -> list[str]:
        """The replicas dead for ``dead_after`` seconds, or whose process is gone from this
        node (``everyone_else``: every other one, as for SQLite's one owner).

        On PostgreSQL their rows stay share-locked until the transaction ends, and a
        replica's heartbeat that committed first takes it off the list: a replica that
        comes back either sees this transaction's takeover (its heartbeat waited for it),
        or is not taken over."""
        if everyone_else:
            others = connection.execute(
                sa.text("SELECT id FROM replicas WHERE id <> :me"), {"me": replica}
            )
            return [row[0] for row in others]
        before = self._now(connection) - dead_after
        rows = connection.execute(
            sa.text("SELECT id, heartbeat < :before, node, pid FROM replicas WHERE id <> :me"),
            {"me": replica, "before": before},
        ).all()
        late = [id_ for id_, is_late, _, _ in rows if is_late]
        gone = [id_ for id_, is_late, node, pid in rows if not is_late and _gone(id_, node, pid)]
        if not self.postgres or not (late or gone):
            return sorted(late + gone)
        # Lock, then check again: the heartbeat of a late one may have committed meanwhile.
        locked = connection.exec_driver_sql(
            "SELECT id, heartbeat < %s FROM replicas WHERE id = ANY(%s) FOR SHARE",
            (before, late + gone),
        ).all()
        return sorted(id_ for id_, is_late in locked if is_late or id_ in gone)

    def adopt(
        self,
        replica: str,
        dead_after: float,
        limit: int,
        *,
        kind: str,
        detail: Callable[[str | None], str],
        everyone_else: bool = False,
        after: tuple[float, str] | None = None,
    ) -> list[Adopted]:
        """Take over at most ``limit`` unfinished jobs owned by nobody or by a dead replica
        (``_dead``; ``everyone_else``: by anyone but ``replica``), oldest first (by
        ``created_at``, ``job_id``), only those after ``after`` if given; epoch + 1 each,
        and an event ``kind`` each with ``detail(previous owner)``."""
        with writing(self.engine) as connection:
            now = self._now(connection)
            dead = self._dead(connection, replica, dead_after, everyone_else)
            if self.postgres:
                taken = self._adopt_postgres(connection, replica, dead, limit, everyone_else, after)
            else:
                taken = self._adopt_sqlite(connection, replica, dead, limit, everyone_else, after)
            details: dict[str | None, str] = {}  # a batch mostly has one previous owner
            for a in taken:
                if a.previous not in details:
                    details[a.previous] = detail(a.previous)
            events = [
                (a.record.job_id, now, kind, a.record.phase, details[a.previous]) for a in taken
            ]
            for statement, params in self._sql.insert_events(events):
                connection.exec_driver_sql(statement, params)
        return taken

    def _adopt_postgres(
        self,
        connection: sa.Connection,
        replica: str,
        dead: Sequence[str],
        limit: int,
        everyone_else: bool,
        after: tuple[float, str] | None,
    ) -> list[Adopted]:
        owned = (
            "owner IS DISTINCT FROM %s" if everyone_else else "(owner IS NULL OR owner = ANY(%s))"
        )
        owned_param: Any = replica if everyone_else else list(dead)
        since, since_params = _after("%s", after)
        statement = (
            f"UPDATE jobs SET owner = %s, epoch = jobs.epoch + 1"
            f" FROM (SELECT job_id, owner AS previous FROM jobs"
            f" WHERE {owned} AND ({UNFINISHED}){since}"
            f" ORDER BY created_at, job_id LIMIT %s FOR UPDATE SKIP LOCKED) AS picked"
            f" WHERE jobs.job_id = picked.job_id"
            f" RETURNING picked.previous, {_FIELDS}"
        )
        rows = connection.exec_driver_sql(statement, (replica, owned_param, *since_params, limit))
        taken = [_adopted(row) for row in rows.all()]
        taken.sort(key=lambda a: (a.record.created_at, a.record.job_id))
        return taken

    def _adopt_sqlite(
        self,
        connection: sa.Connection,
        replica: str,
        dead: Sequence[str],
        limit: int,
        everyone_else: bool,
        after: tuple[float, str] | None,
    ) -> list[Adopted]:
        params: tuple[str, ...]
        if everyone_else:
            owned, params = "owner IS NOT ?", (replica,)
        else:
            marks = ", ".join("?" * len(dead))
            owned = f"(owner IS NULL OR owner IN ({marks}))" if dead else "owner IS NULL"
            params = tuple(dead)
        since, since_params = _after("?", after)
        picked = connection.exec_driver_sql(
            f"SELECT job_id, owner FROM jobs WHERE {owned} AND ({UNFINISHED}){since}"
            " ORDER BY created_at, job_id LIMIT ?",
            (*params, *since_params, limit),
        ).all()
        previous: dict[str, str | None] = {job_id: owner for job_id, owner in picked}
        taken: list[Adopted] = []
        for at in range(0, len(picked), 500):
            ids = [job_id for job_id, _ in picked[at : at + 500]]
            marks = ", ".join("?" * len(ids))
            rows = connection.exec_driver_sql(
                f"UPDATE jobs SET owner = ?, epoch = epoch + 1 WHERE job_id IN ({marks})"
                f" RETURNING NULL, {', '.join(RECORD_FIELDS)}",
                (replica, *ids),
            ).all()  # at once: row by row through the result costs more than the rows
            for row in rows:
                adopted = _adopted(row)
                taken.append(Adopted(adopted.record, previous[adopted.record.job_id]))
        taken.sort(key=lambda a: (a.record.created_at, a.record.job_id))
        return taken

    def claim(self, replica: str, job_id: str, dead_after: float) -> JobRecord | None:
        """Take over one unfinished job if nobody owns it or its owner is dead (``_dead``),
        epoch + 1; its row as now owned, else None. A job this replica owns already is
        returned as it is: bumping its epoch would fence out the actor that a takeover
        started for it."""
        m = self._mark
        lock = " FOR UPDATE" if self.postgres else ""
        with writing(self.engine) as connection:
            found = connection.exec_driver_sql(
                f"SELECT owner FROM jobs WHERE job_id = {m} AND ({UNFINISHED}){lock}", (job_id,)
            ).all()
            if not found:
                return None
            owner = found[0][0]
            if owner == replica:  # adopted meanwhile (a takeover): its actor keeps the epoch
                rows = connection.exec_driver_sql(
                    f"SELECT NULL, {', '.join(RECORD_FIELDS)} FROM jobs WHERE job_id = {m}",
                    (job_id,),
                ).all()
                return _adopted(rows[0]).record
            if owner is not None:
                dead = self._dead(connection, replica, dead_after, not self.postgres)
                known = connection.execute(
                    sa.text("SELECT 1 FROM replicas WHERE id = :owner"), {"owner": owner}
                ).all()
                if known and owner not in dead:
                    return None
            rows = connection.exec_driver_sql(
                f"UPDATE jobs SET owner = {m}, epoch = epoch + 1 WHERE job_id = {m}"
                f" RETURNING NULL, {', '.join(RECORD_FIELDS)}",
                (replica, job_id),
            ).all()
        return _adopted(rows[0]).record if rows else None

    def owned(self, replica: str) -> dict[str, int]:
        """The epoch of each unfinished job this replica owns."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(f"SELECT job_id, epoch FROM jobs WHERE owner = :me AND ({UNFINISHED})"),
                {"me": replica},
            )
            return {job_id: int(epoch) for job_id, epoch in rows}

    def release(self, replica: str) -> int:
        """Give up this replica's unfinished jobs (owner none, epoch + 1) and delete its row;
        peers are notified. How many jobs were released."""
        with writing(self.engine) as connection:
            result = connection.execute(
                sa.text(
                    f"UPDATE jobs SET owner = NULL, epoch = epoch + 1"
                    f" WHERE owner = :me AND ({UNFINISHED})"
                ),
                {"me": replica},
            )
            connection.execute(sa.text("DELETE FROM replicas WHERE id = :me"), {"me": replica})
            self._notify(connection, f"released {replica}")
        _HERE.discard(replica)
        return int(result.rowcount)

    def prune(self) -> int:
        """Delete the rows of replicas dead for ``PRUNE_AFTER`` that own no unfinished job,
        and free the jobs of owners with no row at all (removed by hand). How many rows."""
        with writing(self.engine) as connection:
            now = self._now(connection)
            result = connection.execute(
                sa.text(
                    "DELETE FROM replicas WHERE heartbeat < :before AND NOT EXISTS"
                    f" (SELECT 1 FROM jobs WHERE jobs.owner = replicas.id AND ({UNFINISHED}))"
                ),
                {"before": now - PRUNE_AFTER},
            )
            connection.execute(
                sa.text(
                    "UPDATE jobs SET owner = NULL, epoch = epoch + 1 WHERE owner IS NOT NULL"
                    f" AND ({UNFINISHED}) AND NOT EXISTS"
                    " (SELECT 1 FROM replicas WHERE replicas.id = jobs.owner)"
                )
            )
            return int(result.rowcount)

    # -- delete intents ----------------------------------------------------------------------

    def request_delete(
        self, job_id: str, now: float, message: str, detail: str
    ) -> JobRecord | None:
        """Journal a delete intent for a job this replica does not run, unless the job has
        settled or has one already: its row as now, else None. Its owner is notified."""
        m = self._mark
        with writing(self.engine) as connection:
            rows = connection.exec_driver_sql(
                f"UPDATE jobs SET delete_state = {m}, epoch = epoch + 1, updated_at = {m},"
                f" message = {m} WHERE job_id = {m} AND delete_state = {m} AND {CANCELLABLE}"
                f" RETURNING NULL, {', '.join(RECORD_FIELDS)}",
                (DeleteState.REQUESTED.value, now, message, job_id, DeleteState.NONE.value),
            ).all()
            if not rows:
                return None
            record = _adopted(rows[0]).record
            events = [(job_id, now, "delete_intent", record.phase, detail)]
            for statement, params in self._sql.insert_events(events):
                connection.exec_driver_sql(statement, params)
            if record.owner is not None:
                self._notify(connection, f"delete {record.owner} {job_id}")
        return record

    def _notify(self, connection: sa.Connection, payload: str) -> None:
        if self.postgres:
            connection.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})

    # -- notifications ---------------------------------------------------------------------

    def listen(
        self,
        on_notify: Callable[[str], None],
        on_listening: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """Deliver every payload on ``CHANNEL`` to ``on_notify`` until ``stop`` is set (on a
        connection of its own; PostgreSQL only). ``on_listening`` is called once LISTEN is
        in place. Errors: the driver's, when the connection fails."""
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        raw: Any = self.engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            raw.autocommit = True
            raw.execute(f"LISTEN {CHANNEL}")
            on_listening()
            while not stop.is_set():
                for notice in raw.notifies(timeout=0.5):
                    on_notify(notice.payload)
        finally:
            raw.close()


def this_node() -> str | None:
    """This kernel's boot id and this process's PID namespace: two replicas with the same
    node see the same pids. None where /proc does not tell."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{namespace}"


_HERE: set[str] = set()  # the replicas registered by this process and not released


def _gone(replica: str, node: str | None, pid: int) -> bool:
    """A replica of this node whose process has exited (or had this very pid, reused by a
    restart: a container's pid 1): dead, whatever its last heartbeat says."""
    if node is None or node != this_node():
        return False
    if pid == os.getpid():
        return replica not in _HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            state = file.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")  # exited, not yet reaped by its parent


def _after(mark: str, after: tuple[float, str] | None) -> tuple[str, tuple[Any, ...]]:
    """The condition (and its parameters) for rows after ``after`` (created_at, job_id).

    Batches of one takeover start where the previous one ended: without it, each batch
    scans the unfinished index past every row adopted before it (quadratic in the jobs of
    a resume). Written as a range on ``created_at`` so the index serves it."""
    if after is None:
        return "", ()
    created_at, job_id = after
    condition = f" AND created_at >= {mark} AND (created_at > {mark} OR job_id > {mark})"
    return condition, (created_at, created_at, job_id)


def _adopted(row: Any) -> Adopted:
    return Adopted(record_of_tuple(row[1:]), row[0])
