"""``python -m supervisor replicas``: live and dead replicas by the journal's clock, the
unfinished jobs each owns, the jobs nobody listed owns; read-only, one line on errors.

Replica rows and owned jobs are inserted directly through SQLAlchemy, into real SQLite and
PostgreSQL journals, as the replicas would leave them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from supervisor.cli import build_parser, main
from supervisor.journal import TERMINAL_PHASES, create_engine, metadata, replicas, upgrade

QUEUED, RUNNING, SUCCEEDED = 1, 2, 3
assert SUCCEEDED in TERMINAL_PHASES
jobs = metadata.tables["jobs"]

A, B, C = "node-a-101-aaaaaa", "node-b-202-bbbbbb", "node-c-303-cccccc"


def database_now(connection: sa.Connection) -> float:
    """The clock heartbeats are stamped with: PostgreSQL's own, or this host's for SQLite."""
    if connection.dialect.name == "postgresql":
        now = connection.execute(sa.text("SELECT extract(epoch from clock_timestamp())"))
        return float(now.scalar_one())
    return time.time()


def job(job_id: str, owner: str | None, phase: int = RUNNING, **changes: Any) -> dict[str, Any]:
    now = time.time()
    row: dict[str, Any] = {
        "job_id": job_id,
        "task_type": "echo",
        "task_type_version": 0,
        "connector": "Echo connector",
        "attempt": 0,
        "create_state": "created",
        "delete_state": "none",
        "phase": phase,
        "created_at": now,
        "updated_at": now,
        "message": "",
        "log_links": "[]",
        "owner": owner,
        "epoch": 1 if owner else 0,
    }
    return row | changes


def populate(url: str, heartbeat_ages: dict[str, float], rows: list[dict[str, Any]]) -> None:
    """Replica rows whose heartbeats are as old as ``heartbeat_ages`` says, and ``rows``."""
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            now = database_now(connection)
            for pid, (replica, age) in enumerate(heartbeat_ages.items(), start=1):
                host = replica.split("-")[0] + "-" + replica.split("-")[1]
                started, heartbeat = now - 3600 + pid, now - age
                row = {"id": replica, "host": host, "pid": pid}
                connection.execute(
                    replicas.insert().values(**row, started=started, heartbeat=heartbeat)
                )
            if rows:
                connection.execute(jobs.insert(), rows)
    finally:
        engine.dispose()


def fleet() -> tuple[dict[str, float], list[dict[str, Any]]]:
    """A and B live, C dead; C owns two unfinished jobs; three are unowned or orphaned."""
    ages = {A: 0.5, B: 1.5, C: 30.0}
    rows = [
        job("a1", A),
        job("a2", A, create_state="pending", phase=QUEUED),
        job("a3", A, phase=SUCCEEDED),  # finished: not counted as owed work
        job("b1", B, delete_state="requested"),
        job("c1", C),
        job("c2", C),
        job("r1", None),  # released at a SIGTERM
        job("r2", None, phase=SUCCEEDED),  # finished: not owed
        job("o1", "gone-404-dddddd"),  # its owner's row was pruned
        job("o2", "gone-404-dddddd"),
    ]
    return ages, rows


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def report(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "replicas", "--journal", url, "--json", *args)
    assert (code, err) == (0, "")
    found: dict[str, Any] = json.loads(out)
    return found


def test_replicas_are_listed_live_or_dead_with_the_unfinished_jobs_they_own(
    capsys: pytest.CaptureFixture[str], journal_url: str
) -> None:
    populate(journal_url, *fleet())
    found = report(capsys, journal_url)
    listed = {r["id"]: r for r in found["replicas"]}
    assert [r["id"] for r in found["replicas"]] == [A, B, C]  # oldest first
    assert {k: (r["live"], r["jobs"]) for k, r in listed.items()} == {
        A: (True, 2),
        B: (True, 1),
        C: (False, 2),
    }
    assert 30.0 <= listed[C]["heartbeat_age"] < 30.0 + 20
    assert 0.5 <= listed[A]["heartbeat_age"] < listed[C]["heartbeat_age"]
    assert listed[B]["host"] == "node-b"
    assert listed[B]["pid"] == 2
    assert found["unowned"] == {"jobs": 3, "released": 1, "orphaned": 2}
    assert found["dead_after"] == 10.0


def test_heartbeat_ages_are_read_on_the_clock_that_stamps_them(
    capsys: pytest.CaptureFixture[str], journal_url: str
) -> None:
    populate(journal_url, {A: 0.0}, [])
    found = report(capsys, journal_url)
    expected = "database" if journal_url.startswith("postgresql") else "local"
    assert found["clock"] == expected
    [replica] = found["replicas"]
    assert found["now"] - replica["heartbeat"] == pytest.approx(replica["heartbeat_age"])
    assert replica["heartbeat_age"] >= 0  # read after the rows: never a heartbeat to come


def test_dead_after_decides_who_is_dead(
    capsys: pytest.CaptureFixture[str], journal_url: str
) -> None:
    populate(journal_url, {A: 5.0, B: 30.0}, [])

    def live(dead_after: str) -> dict[str, bool]:
        found = report(capsys, journal_url, "--dead-after", dead_after)
        return {r["id"]: r["live"] for r in found["replicas"]}

    assert live("60") == {A: True, B: True}
    assert live("10") == {A: True, B: False}
    assert live("2") == {A: False, B: False}


def test_dead_after_defaults_to_the_variable_serve_reads() -> None:
    parser = build_parser({"SUPERVISOR_DEAD_AFTER": "25"})
    assert parser.parse_args(["replicas"]).dead_after == 25.0
    assert build_parser({}).parse_args(["replicas"]).dead_after == 10.0


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_dead_after_is_refused(capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replicas", "--dead-after", value])
    assert exit_.value.code == 2
    assert "argument --dead-after" in capsys.readouterr().err


def test_the_table_shows_each_replica_and_a_line_for_unowned_jobs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    populate(url, *fleet())
    code, out, _ = cli(capsys, "replicas", "--journal", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"journal {url}: 3 replica(s), 2 live, 1 dead (dead after 10 s")
    header = next(line for line in lines if line.startswith("REPLICA"))
    columns = ["REPLICA", "HOST", "PID", "STARTED", "HEARTBEAT", "AGE", "STATE", "JOBS"]
    assert header.split() == columns
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("node-")}
    assert rows[C][-2:] == ["dead", "2"]
    assert rows[A][-2:] == ["live", "2"]
    assert rows[C][-3].endswith("s")
    assert float(rows[C][-3].removesuffix("s")) >= 30.0
    assert lines[-1] == (
        "unowned: 3 unfinished job(s) (1 released, 2 of replicas no longer listed): "
        "a live replica adopts them at its next heartbeat"
    )


def test_jobs_with_no_live_replica_say_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    populate(url, {C: 60.0}, [job("r1", None)])
    _, out, _ = cli(capsys, "replicas", "--journal", url)
    assert out.splitlines()[-1].endswith("(1 released): no live replica to adopt them")


def test_a_journal_without_replicas(capsys: pytest.CaptureFixture[str], journal_url: str) -> None:
    populate(journal_url, {}, [job("x1", None, phase=SUCCEEDED)])
    code, out, _ = cli(capsys, "replicas", "--journal", journal_url)
    assert code == 0
    assert "0 replica(s), 0 live, 0 dead" in out.splitlines()[0]
    assert out.splitlines()[-1] == "unowned: 0 unfinished job(s)"
    assert report(capsys, journal_url)["replicas"] == []


# -- read-only, and errors in one line ----------------------------------------------------------


def test_listing_never_changes_a_sqlite_journal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    populate(f"sqlite:///{path}", *fleet())
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert cli(capsys, "replicas", "--journal", f"sqlite:///{path}")[0] == 0
    assert cli(capsys, "replicas", "--journal", f"sqlite:///{path}", "--json")[0] == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_listing_takes_no_lock_a_writer_would_wait_on(
    capsys: pytest.CaptureFixture[str], postgres_database_url: str
) -> None:
    """EXCLUSIVE locks let plain reads through and stop anything that writes or locks rows
    (a blocked listing would run into the read-only sessions' statement timeout)."""
    populate(postgres_database_url, *fleet())
    engine = sa.create_engine(postgres_database_url)
    try:
        with engine.begin() as holder:
            holder.execute(sa.text("LOCK TABLE replicas, jobs IN EXCLUSIVE MODE"))
            started = time.monotonic()
            found = report(capsys, postgres_database_url)
            assert time.monotonic() - started < 10.0
    finally:
        engine.dispose()
    assert found["unowned"]["jobs"] == 3
    assert len(found["replicas"]) == 3


def test_a_missing_journal_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    code, out, err = cli(capsys, "replicas", "--journal", f"sqlite:///{path}")
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert "no journal at" in err
    assert not path.exists()


def test_a_journal_of_an_older_schema_is_one_line(
    capsys: pytest.CaptureFixture[str], journal_url: str
) -> None:
    upgrade(journal_url, "0002")  # before the replicas table
    code, _, err = cli(capsys, "replicas", "--journal", journal_url)
    assert code == 3
    assert err.count("\n") == 1
    assert "journal schema is at 0002" in err


def test_a_database_without_the_schema_says_to_upgrade(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    code, _, err = cli(capsys, "replicas", "--journal", f"sqlite:///{path}")
    assert code == 3
    assert "journal upgrade" in err
