"""``python -m supervisor journal ls|show|stats``: filters, history, counts, JSON, names only
of anything secret, read-only (SQLite and PostgreSQL), and safe against a running server.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
import trio

from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Connection,
    Identifier,
    TaskExecutionIdentifier,
    TaskTemplate,
)
from supervisor.cli import main, meta_candidates, parse_age, parse_phase
from supervisor.journal import CreateState, DeleteState, JobRecord, Journal, JournalReader, Put
from tests.support.operators import CALL_TIMEOUT, SAMPLE_ARGS, create_request, run_cli, stub
from tests.support.postgres import PostgresServer, fresh_database
from tests.support.server import ServerProcess

QUEUED, RUNNING, SUCCEEDED, FAILED = 1, 2, 3, 5
ECHO, PROCESS = "Echo connector", "Local process connector"
SECRET, ENV_VALUE = "hunter2-secret-value", "env-secret-value"


def request_with_secrets() -> bytes:
    """A create_request holding values it never should: the CLI must print names only."""
    request = pb.CreateTaskRequest(
        template=TaskTemplate(type="echo"),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(task_id=Identifier(name="t")),
            environment_variables={"TOKEN": ENV_VALUE},
        ),
        connection=Connection(secrets={"api_key": SECRET}, configs={"region": SECRET}),
    )
    return bytes(request)


def record(job_id: str, age: float, **changes: Any) -> JobRecord:
    now = time.time()
    base = JobRecord(
        job_id=job_id,
        task_type="echo",
        task_type_version=0,
        connector=ECHO,
        attempt=0,
        create_state=CreateState.CREATED,
        delete_state=DeleteState.NONE,
        phase=RUNNING,
        created_at=now - age,
        updated_at=now - age,
        resource_meta=json.dumps({"job_id": job_id}, separators=(",", ":")).encode(),
    )
    return dataclasses.replace(base, **changes)


def population() -> list[Put]:
    a = record("aaaa1111", 3600, create_request=request_with_secrets())
    return [
        Put(
            dataclasses.replace(a, create_state=CreateState.PENDING, phase=QUEUED), "create_intent"
        ),
        Put(a, "created", '{"reconciled": false}'),
        Put(record("bbbb2222", 60, phase=SUCCEEDED, message="all done"), "phase"),
        Put(
            record(
                "cccc3333",
                10,
                task_type="process",
                connector=PROCESS,
                create_state=CreateState.PENDING,
                phase=QUEUED,
                resource_meta=None,
            ),
            "create_intent",
        ),
        Put(record("dddd4444", 7200, delete_state=DeleteState.REQUESTED), "delete_intent"),
        Put(
            record(
                "eeee5555",
                30,
                task_type="process",
                connector=PROCESS,
                create_state=CreateState.FAILED,
                phase=FAILED,
                message="create failed: boom",
            ),
            "create_failed",
        ),
    ]


#: Owners of the population's jobs, as replicas leave them (the rest have none: released).
OWNERS = {
    "aaaa1111": "node-a-101-aaaaaa",
    "bbbb2222": "node-a-101-aaaaaa",
    "dddd4444": "node-b-7-b",
}


def populate(url: str) -> None:
    async def write() -> None:
        async with Journal.open(url) as journal:
            for put in population():
                await journal.write(put)

    trio.run(write)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for job_id, owner in OWNERS.items():
                connection.execute(
                    sa.text("UPDATE jobs SET owner = :owner, epoch = 3 WHERE job_id = :job"),
                    {"owner": owner, "job": job_id},
                )
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One populated journal per backend for the whole module: the CLI only reads it."""
    if request.param == "sqlite":
        populated = f"sqlite:///{tmp_path_factory.mktemp('journal') / 'journal.db'}"
        populate(populated)
        yield populated
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with fresh_database(server.port) as populated:
        populate(populated)
        yield populated


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ls_ids(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> list[str]:
    code, out, _ = cli(capsys, "journal", "ls", "--journal", url, "--json", *args)
    assert code == 0
    return [job["job_id"] for job in json.loads(out)]


# -- ls --------------------------------------------------------------------------------------


def test_ls_lists_newest_first(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert ls_ids(capsys, url) == ["cccc3333", "eeee5555", "bbbb2222", "aaaa1111", "dddd4444"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--phase", "running"], ["aaaa1111", "dddd4444"]),
        (["--phase", "3"], ["bbbb2222"]),
        (["--connector", PROCESS], ["cccc3333", "eeee5555"]),
        (["--connector", PROCESS.upper()], ["cccc3333", "eeee5555"]),  # any case
        (["--task-type", "process"], ["cccc3333", "eeee5555"]),
        (["--older-than", "30m"], ["aaaa1111", "dddd4444"]),
        (["--live"], ["cccc3333", "aaaa1111", "dddd4444"]),
        (["--live", "--task-type", "process"], ["cccc3333"]),  # UNFINISHED's ORs bracketed
        (["--limit", "2", "--offset", "1"], ["eeee5555", "bbbb2222"]),
        (["--task-type", "echo", "--phase", "RUNNING", "--older-than", "90m"], ["dddd4444"]),
    ],
)
def test_ls_filters(
    capsys: pytest.CaptureFixture[str], url: str, args: list[str], expected: list[str]
) -> None:
    assert ls_ids(capsys, url, *args) == expected


def test_ls_json_says_what_the_supervisor_is_doing(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, _ = cli(capsys, "journal", "ls", "--journal", url, "--json")
    assert code == 0
    jobs = {job["job_id"]: job for job in json.loads(out)}
    assert {k: v["state"] for k, v in jobs.items()} == {
        "aaaa1111": "live",
        "bbbb2222": "done",
        "cccc3333": "creating",
        "dddd4444": "cancelling",
        "eeee5555": "create failed",
    }
    assert jobs["bbbb2222"]["phase"] == "SUCCEEDED"
    assert jobs["aaaa1111"]["resource_meta"] == '{"job_id":"aaaa1111"}'
    assert jobs["cccc3333"]["live"] is True
    assert {k: v["owner"] for k, v in jobs.items()} == {
        job_id: OWNERS.get(job_id) for job_id in jobs
    }
    assert (jobs["aaaa1111"]["epoch"], jobs["cccc3333"]["epoch"]) == (3, 0)


def test_ls_prints_a_table(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "ls", "--journal", url, "--limit", "2")
    assert code == 0
    header, first, second, more = out.splitlines()
    columns = ["JOB", "TASK", "TYPE", "PHASE", "STATE", "OWNER", "AGE", "UPDATED", "MESSAGE"]
    assert header.split() == columns
    assert first.split()[:6] == ["cccc3333", "process", "v0", "QUEUED", "creating", "-"]
    assert second.split()[:4] == ["eeee5555", "process", "v0", "FAILED"]
    assert more == "(more may follow: --offset 2)"


def test_ls_names_each_jobs_owner(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "ls", "--journal", url, "--phase", "running")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["aaaa1111"][5] == OWNERS["aaaa1111"]
    assert rows["dddd4444"][5] == OWNERS["dddd4444"]


# -- show --------------------------------------------------------------------------------------


def test_show_prints_the_job_and_its_history(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "show", "aaaa1111", "--journal", url, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["job"]["job_id"] == "aaaa1111"
    assert [e["kind"] for e in shown["events"]] == ["create_intent", "created"]
    assert [e["phase"] for e in shown["events"]] == ["QUEUED", "RUNNING"]
    assert shown["events"][1]["detail"] == {"reconciled": False}
    assert shown["request"]["secrets"] == ["api_key"]
    assert shown["request"]["environment_variables"] == ["TOKEN"]


@pytest.mark.parametrize("as_json", [True, False])
def test_show_prints_names_never_values(
    capsys: pytest.CaptureFixture[str], url: str, as_json: bool
) -> None:
    flags = ["--json"] if as_json else []
    code, out, err = cli(capsys, "journal", "show", "aaaa1111", "--journal", url, *flags)
    assert code == 0
    assert "api_key" in out
    assert SECRET not in out + err
    assert ENV_VALUE not in out + err


def test_show_accepts_a_unique_prefix(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "show", "bbbb", "--journal", url)
    assert code == 0
    assert out.splitlines()[0].split() == ["job", "bbbb2222"]
    assert "all done" in out


def test_show_finds_a_job_by_the_resource_meta_a_caller_holds(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    held = '{ "job_id": "dddd4444" }'  # spaced as a person types it, not as it was encoded
    code, out, _ = cli(
        capsys, "journal", "show", "--journal", url, "--resource-meta", held, "--task-type", "echo"
    )
    assert code == 0
    assert "dddd4444" in out


def test_show_of_an_unknown_job_exits_1(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, _, err = cli(capsys, "journal", "show", "ffff9999", "--journal", url)
    assert code == 1
    assert "no job ffff9999" in err


def test_show_needs_exactly_one_way_to_name_the_job(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert cli(capsys, "journal", "show", "--journal", url)[0] == 2
    assert cli(capsys, "journal", "show", "--journal", url, "--resource-meta", "{}")[0] == 2


# -- stats ---------------------------------------------------------------------------------------


def test_stats_counts_by_connector_and_phase(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "stats", "--journal", url, "--json")
    assert code == 0
    stats = json.loads(out)
    assert (stats["jobs"], stats["live"]) == (5, 3)
    assert (stats["pending_creates"], stats["pending_deletes"]) == (1, 1)
    assert stats["oldest_live"]["job_id"] == "dddd4444"
    assert stats["last_write"] is not None
    assert stats["counts"] == [
        {"connector": ECHO, "phase": "RUNNING", "jobs": 2, "live": 2},
        {"connector": ECHO, "phase": "SUCCEEDED", "jobs": 1, "live": 0},
        {"connector": PROCESS, "phase": "QUEUED", "jobs": 1, "live": 1},
        {"connector": PROCESS, "phase": "FAILED", "jobs": 1, "live": 0},
    ]


def test_stats_prints_a_summary(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "stats", "--journal", url)
    assert code == 0
    assert "jobs         5 (3 live)" in out
    assert "pending      1 create(s), 1 delete(s)" in out
    assert "oldest live  dddd4444" in out


def test_stats_counts_jobs_by_owner(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "journal", "stats", "--journal", url, "--json")
    assert code == 0
    assert json.loads(out)["owners"] == [
        {"owner": "node-a-101-aaaaaa", "jobs": 2, "live": 1},  # bbbb2222 is done
        {"owner": "node-b-7-b", "jobs": 1, "live": 1},
        {"owner": None, "jobs": 2, "live": 1},  # released (or never owned) last
    ]
    code, out, _ = cli(capsys, "journal", "stats", "--journal", url)
    table = out.split("OWNER", 1)[1].splitlines()
    assert table[0].split() == ["JOBS", "LIVE"]
    assert [line.split() for line in table[1:]] == [
        ["node-a-101-aaaaaa", "2", "1"],
        ["node-b-7-b", "1", "1"],
        ["(none)", "2", "1"],
    ]


# -- read-only -----------------------------------------------------------------------------------


def test_reading_never_changes_a_sqlite_journal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    populate(url)
    before = hashlib.sha256((tmp_path / "journal.db").read_bytes()).hexdigest()
    for command in (["ls"], ["stats"], ["show", "aaaa1111"]):
        assert cli(capsys, "journal", *command, "--journal", url)[0] == 0
    assert hashlib.sha256((tmp_path / "journal.db").read_bytes()).hexdigest() == before


def test_a_missing_sqlite_journal_is_an_error_not_a_new_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "nothing" / "journal.db"
    code, _, err = cli(capsys, "journal", "ls", "--journal", f"sqlite:///{path}")
    assert code == 3
    assert "no journal at" in err
    assert not path.parent.exists()


def test_a_database_without_the_schema_says_to_upgrade(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    code, _, err = cli(capsys, "journal", "stats", "--journal", f"sqlite:///{path}")
    assert code == 3
    assert "journal upgrade" in err


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800)]
)
def test_ages(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m", "1h 30m", "-"])
def test_bad_ages_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not an age"):
        parse_age(text)


def test_phases_by_name_or_number() -> None:
    assert parse_phase("retryable_failed") == 8
    assert parse_phase("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match="not a phase"):
        parse_phase("DONE")


def test_resource_meta_candidates_include_the_connector_encoding() -> None:
    assert meta_candidates('{"b": 1, "a": 2}')[:2] == [b'{"b": 1, "a": 2}', b'{"a":2,"b":1}']
    assert meta_candidates("base64:AAE=") == [b"\x00\x01"]


# -- against a running server ------------------------------------------------------------------


@pytest.mark.slow
def test_the_cli_reads_a_running_servers_journal(tmp_path: Path) -> None:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            api = stub(channel)
            plain = api.CreateTask(create_request("plain", job_id="p1"), timeout=CALL_TIMEOUT)
            api.CreateTask(create_request("echo"), timeout=CALL_TIMEOUT)
        journal = ["--journal", server.journal_url, "--json"]
        listed = run_cli(["journal", "ls", "--live", *journal])
        stats = run_cli(["journal", "stats", *journal])
        meta = plain.resource_meta.decode()
        shown = run_cli(
            ["journal", "show", "--resource-meta", meta, "--task-type", "plain", *journal]
        )
        assert server.running
    assert listed.returncode == 0, listed.stderr
    # Newest first; the echo job is live until its first poll.
    assert [job["connector"] for job in json.loads(listed.stdout)] == [
        "Echo connector",
        "Plain connector",
    ]
    assert json.loads(stats.stdout)["jobs"] == 2
    assert shown.returncode == 0, shown.stderr
    assert [e["kind"] for e in json.loads(shown.stdout)["events"]][:2] == [
        "create_intent",
        "created",
    ]


@pytest.mark.slow
def test_a_reader_in_a_long_transaction_does_not_hold_up_the_servers_writes(
    tmp_path: Path,
) -> None:
    with ServerProcess(SAMPLE_ARGS, log_dir=tmp_path) as server:
        server.start()
        with (
            JournalReader.open(server.journal_url) as reader,
            reader.engine.begin() as reading,
            grpc.insecure_channel(server.address) as channel,
        ):
            reading.exec_driver_sql("SELECT COUNT(*) FROM jobs").scalar_one()  # holds a snapshot
            started = time.monotonic()
            for n in range(3):
                stub(channel).CreateTask(
                    create_request("plain", job_id=f"p{n}"), timeout=CALL_TIMEOUT
                )
            elapsed = time.monotonic() - started
        assert elapsed < 5.0  # a blocked writer would wait out SQLite's 10 s busy timeout
