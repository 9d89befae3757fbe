"""The journal, on SQLite and on PostgreSQL: durable writes, group commit, reads, migrations."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
import trio.testing
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import connectors
import supervisor.journal
from supervisor.journal import (
    TERMINAL_PHASES,
    UNFINISHED,
    UNFINISHED_RULE,
    CreateState,
    DeleteState,
    FencedOut,
    IfAbsent,
    InMemoryJournal,
    JobQuery,
    JobRecord,
    Journal,
    JournalError,
    JournalLost,
    JournalReader,
    Put,
    Store,
    create_engine,
    current_revision,
    downgrade,
    head_revision,
    is_settled,
    is_unfinished,
    metadata,
    normalize_url,
    upgrade,
)

T0 = 1_700_000_000.0
RUNNING, SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED = 2, 3, 4, 5, 8


def job(job_id: str, **changes: object) -> JobRecord:
    """A created, running job; ``changes`` override fields."""
    base = JobRecord(
        job_id=job_id,
        task_type="echo",
        task_type_version=0,
        connector="EchoConnector",
        attempt=0,
        create_state=CreateState.CREATED,
        delete_state=DeleteState.NONE,
        phase=RUNNING,
        created_at=T0,
        updated_at=T0,
        resource_meta=f'{{"id": "{job_id}"}}'.encode(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def journal(journal_url: str) -> AsyncIterator[Journal]:
    async with Journal.open(journal_url) as opened:
        yield opened


def test_public_surface() -> None:
    assert sorted(supervisor.journal.__all__) == sorted(
        [
            "Adopted",
            "CANCELLABLE",
            "CHANNEL",
            "ReplicaJournal",
            "ReplicaReport",
            "ReplicaStatus",
            "ReplicaStore",
            "CreateState",
            "DeleteState",
            "EventRecord",
            "FencedOut",
            "InMemoryJournal",
            "JobQuery",
            "JobRecord",
            "Journal",
            "JournalBusy",
            "JournalError",
            "JournalLost",
            "JournalLike",
            "JournalProxy",
            "JournalCall",
            "JOURNAL_WRITES",
            "JournalReader",
            "JournalStatistics",
            "JournalSummary",
            "JournalURLError",
            "Outcome",
            "PhaseCount",
            "Owner",
            "OwnerCount",
            "Put",
            "current_revision",
            "downgrade",
            "head_revision",
            "upgrade",
            "writing",
            "IfAbsent",
            "Store",
            "NO_EXTERNAL_JOB",
            "TERMINAL_PHASES",
            "UNFINISHED",
            "UNFINISHED_RULE",
            "create_engine",
            "is_settled",
            "is_unfinished",
            "metadata",
            "normalize_url",
            "replicas",
            "phase_is_final",
            "safe_url",
            "sqlite_path",
        ]
    )
    for name in supervisor.journal.__all__:
        assert hasattr(supervisor.journal, name)


async def test_write_then_read_back(journal: Journal) -> None:
    intent = job("a", create_state=CreateState.PENDING, phase=0, resource_meta=None)
    await journal.write(Put(intent, "create_intent", '{"key": "k"}'))

    assert await journal.get("a") == intent
    assert await journal.get("nobody") is None
    assert await journal.unfinished() == [intent]
    [event] = await journal.events("a")
    assert (event.job_id, event.kind, event.phase, event.detail) == (
        "a",
        "create_intent",
        0,
        '{"key": "k"}',
    )
    assert event.at == intent.updated_at

    created = job("a", resource_meta=b"\x00meta\xff", outputs=b"out", custom_info="{}")
    await journal.write(Put(created, "created"))
    assert await journal.find_by_meta("echo", 0, b"\x00meta\xff") == created
    assert await journal.find_by_meta("echo", 1, b"\x00meta\xff") is None
    assert await journal.find_by_meta("other", 0, b"\x00meta\xff") is None
    assert await journal.find_by_meta("echo", 0, b"\x00meta") is None


async def test_upsert_replaces_the_row_and_appends_events_in_order(journal: Journal) -> None:
    steps = [
        Put(job("a", create_state=CreateState.PENDING, phase=0, resource_meta=None), "intent"),
        Put(job("a", phase=1, updated_at=T0 + 1), "created"),
        Put(job("a", phase=RUNNING, updated_at=T0 + 2, message="running"), "phase"),
    ]
    await journal.write(*steps[:2])  # two puts of one job in one write
    await journal.write(steps[2])
    done = job("a", phase=SUCCEEDED, updated_at=T0 + 3, finished_at=T0 + 3, outputs=b"o")
    await journal.write(Put(done, "phase", '{"why": "done"}'))

    assert await journal.get("a") == done
    history = await journal.events("a")
    assert [e.kind for e in history] == ["intent", "created", "phase", "phase"]
    assert [e.phase for e in history] == [0, 1, RUNNING, SUCCEEDED]
    assert [e.at for e in history] == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert [e.seq for e in history] == sorted({e.seq for e in history})
    assert await journal.unfinished() == []


async def test_unfinished_means_pending_create_requested_delete_or_live_phase(
    journal: Journal,
) -> None:
    records = {
        "pending": job("pending", create_state=CreateState.PENDING, phase=0),
        "running": job("running", created_at=T0 + 1),
        "deleting": job("deleting", delete_state=DeleteState.REQUESTED, phase=ABORTED),
        "succeeded": job("succeeded", phase=SUCCEEDED),
        "create_failed": job("create_failed", create_state=CreateState.FAILED, phase=0),
        "abandoned": job("abandoned", create_state=CreateState.ABANDONED, phase=RUNNING),
        "deleted": job("deleted", delete_state=DeleteState.DONE, phase=ABORTED),
        "retryable": job("retryable", phase=RETRYABLE_FAILED),
    }
    await journal.write(*(Put(record, "phase") for record in records.values()))

    unfinished = await journal.unfinished()
    assert [r.job_id for r in unfinished] == ["deleting", "pending", "running"]


async def test_unfinished_agrees_with_the_in_memory_journal(journal: Journal) -> None:
    grid = itertools.product(CreateState, DeleteState, [0, 1, RUNNING, *TERMINAL_PHASES])
    records = [
        job(f"{create}-{delete}-{phase}", create_state=create, delete_state=delete, phase=phase)
        for create, delete, phase in grid
    ]
    await journal.write(*(Put(record, "phase") for record in records))  # every state fits

    expected = sorted(r.job_id for r in records if is_unfinished(r))
    assert sorted(r.job_id for r in await journal.unfinished()) == expected
    assert await journal.get(records[-1].job_id) == records[-1]


async def test_concurrent_writes_are_group_committed_and_durable_when_write_returns(
    journal_url: str,
) -> None:
    count = 500
    async with Journal.open(journal_url) as writer:
        with JournalReader.open(journal_url) as reader:  # another engine

            async def write_and_read_back(i: int) -> None:
                record = job(f"job-{i}", created_at=T0 + i)
                await writer.write(Put(record, "created"))
                seen = await trio.to_thread.run_sync(reader.get, record.job_id)
                assert seen == record

            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(write_and_read_back, i)

        stats = writer.statistics()
    assert stats.puts_committed == count
    assert stats.batches_committed < count
    assert stats.max_batch_size > 1
    assert stats.pending_puts == 0
    assert stats.batches_failed == 0


async def test_batches_hold_at_most_max_batch_puts(journal_url: str) -> None:
    async with Journal.open(journal_url, max_batch=10) as journal:
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(journal.write, Put(job(f"job-{i}"), "created"))
        assert journal.statistics().max_batch_size == 10

        big = [Put(job(f"big-{i}"), "created") for i in range(25)]
        await journal.write(*big)  # one write is never split: it commits alone
        stats = journal.statistics()
    assert (stats.last_batch_size, stats.max_batch_size) == (25, 25)
    assert stats.puts_committed == 125


async def test_failed_commit_fails_its_waiters_and_later_writes_work(journal_url: str) -> None:
    upgrade(journal_url)
    engine = create_engine(journal_url)
    store = Store(engine)
    try:
        async with Journal.open_store(store) as journal:
            store.fail_next()
            failures: list[JournalError] = []

            async def write(job_id: str) -> None:
                with pytest.raises(JournalError) as caught:
                    await journal.write(Put(job(job_id), "created"))
                failures.append(caught.value)

            async with trio.open_nursery() as nursery:  # all five queue before the writer wakes
                for i in range(5):
                    nursery.start_soon(write, f"lost-{i}")

            assert len(failures) == 5
            assert all(isinstance(f.__cause__, sa.exc.OperationalError) for f in failures)
            assert await journal.get("lost-0") is None  # rolled back
            await journal.write(Put(job("kept"), "created"))
            assert (await journal.get("kept")) == job("kept")
            stats = journal.statistics()
    finally:
        engine.dispose()
    assert (stats.batches_failed, stats.batches_committed, stats.pending_puts) == (1, 1, 0)


async def test_unexpected_writer_error_fails_its_waiters_and_propagates(
    journal_url: str,
) -> None:
    upgrade(journal_url)
    engine = create_engine(journal_url)
    store = Store(engine)
    try:
        with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="a bug")):
            async with Journal.open_store(store) as journal:
                store.fail_next(RuntimeError("a bug"))
                with pytest.raises(JournalError):
                    await journal.write(Put(job("a"), "created"))
                await trio.sleep_forever()  # cancelled: the writer crashed
    finally:
        engine.dispose()


async def test_constraint_violation_fails_only_the_faulty_write(journal: Journal) -> None:
    bad = job("bad", attempt=-1)  # violates ck_jobs_attempt
    outcomes: dict[str, BaseException | None] = {}

    async def write(record: JobRecord) -> None:
        try:
            await journal.write(Put(record, "created"))
        except JournalError as exc:
            outcomes[record.job_id] = exc
        else:
            outcomes[record.job_id] = None

    async with trio.open_nursery() as nursery:
        for record in [job("good-1"), bad, job("good-2")]:
            nursery.start_soon(write, record)

    assert outcomes["good-1"] is None
    assert outcomes["good-2"] is None
    assert isinstance(outcomes["bad"], JournalError)
    assert isinstance(outcomes["bad"].__cause__, sa.exc.IntegrityError)
    assert await journal.get("bad") is None
    assert await journal.get("good-2") == job("good-2")
    await journal.write(Put(job("later"), "created"))
    assert journal.statistics().pending_puts == 0


@pytest.fixture
def store(journal_url: str) -> Iterator[Store]:
    upgrade(journal_url)
    engine = create_engine(journal_url)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def statements_of(engine: sa.Engine) -> list[str]:
    """The SQL the engine executes from now on."""
    executed: list[str] = []

    def record(*args: Any) -> None:
        executed.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", record)
    return executed


def test_a_transition_updates_only_the_changing_columns(store: Store) -> None:
    intent = job("a", create_request=b"request", resource_meta=b"meta")
    store.commit([Put(intent, "created")])
    executed = statements_of(store.engine)

    running = dataclasses.replace(intent, phase=RUNNING + 1, message="m", updated_at=T0 + 1)
    store.commit([Put(running, "phase")])

    [update] = [sql for sql in executed if "jobs" in sql]
    assert update.startswith("UPDATE jobs SET")
    assert "create_request" not in update
    assert "meta_key" not in update
    assert store.get("a") == running  # the request blob is intact
    assert store.find_by_meta("echo", 0, b"meta") == running


def test_a_batch_larger_than_one_statement_is_updated_in_place(store: Store) -> None:
    count = 1234  # more rows than one statement takes
    store.commit([Put(job(f"j{i}"), "created") for i in range(count)])
    executed = statements_of(store.engine)

    moved = [job(f"j{i}", phase=RUNNING + 1, updated_at=T0 + i) for i in range(count)]
    store.commit([Put(record, "phase") for record in moved])

    assert not [sql for sql in executed if sql.startswith("INSERT INTO jobs")]
    assert [store.get("j0"), store.get(f"j{count - 1}")] == [moved[0], moved[-1]]
    assert [e.kind for e in store.events(f"j{count - 1}")] == ["created", "phase"]


def test_transitions_changing_any_columns_read_back_exactly(store: Store) -> None:
    store.commit([Put(job("a", create_request=b"r"), "created"), Put(job("b"), "created")])
    every = job(
        "a",
        create_request=b"r",
        attempt=1,
        create_state=CreateState.FAILED,
        delete_state=DeleteState.REQUESTED,
        phase=FAILED,
        updated_at=T0 + 1,
        message="m",
        log_links='[{"uri": "u"}]',
        custom_info="{}",
        deadline=T0 + 2,
        finished_at=T0 + 3,
        owner="o",
        lease_until=T0 + 4,
    )
    some = job("b", message="n", delete_state=DeleteState.REQUESTED, updated_at=T0 + 1)
    store.commit([Put(every, "phase", expect=(None, 0)), Put(some, "delete_intent")])
    assert [store.get("a"), store.get("b")] == [every, some]


def test_a_finished_job_written_again_reads_back(store: Store) -> None:
    store.commit([Put(job("a"), "created")])
    done = job("a", phase=SUCCEEDED, updated_at=T0 + 1, finished_at=T0 + 1)
    store.commit([Put(done, "phase")])  # the writer forgets finished rows
    again = job("a", phase=RUNNING, updated_at=T0 + 2, message="again")
    store.commit([Put(again, "phase")])
    assert store.get("a") == again


def test_the_last_put_of_a_job_in_a_batch_wins_and_new_jobs_are_inserted(store: Store) -> None:
    store.commit([Put(job("a"), "created")])
    later = [job("a", phase=RUNNING + i, updated_at=T0 + i) for i in range(1, 4)]
    store.commit([Put(job("b"), "created"), *(Put(r, "phase") for r in later)])

    assert store.get("a") == later[-1]
    assert store.get("b") == job("b")
    assert [e.phase for e in store.events("a")] == [RUNNING, RUNNING + 1, RUNNING + 2, RUNNING + 3]


def test_a_new_request_or_resource_meta_rewrites_the_whole_row(store: Store) -> None:
    pending = job("a", create_state=CreateState.PENDING, resource_meta=None, create_request=b"1")
    store.commit([Put(pending, "create_intent")])
    created = dataclasses.replace(pending, create_state=CreateState.CREATED, resource_meta=b"m")
    store.commit([Put(created, "created")])
    assert store.find_by_meta("echo", 0, b"m") == created  # meta_key follows resource_meta

    again = dataclasses.replace(created, create_request=b"2", created_at=T0 + 5)
    store.commit([Put(again, "create_intent")])
    assert store.get("a") == again


def test_a_put_without_the_request_keeps_the_journalled_one(store: Store) -> None:
    intent = job("a", create_request=b"r", resource_meta=b"m")
    store.commit([Put(intent, "created")])
    dropped = dataclasses.replace(intent, create_request=None, phase=RUNNING + 1, updated_at=T0 + 1)
    store.commit([Put(dropped, "phase")])  # an UPDATE
    assert store.get("a") == dataclasses.replace(dropped, create_request=b"r")
    moved = dataclasses.replace(dropped, resource_meta=b"m2", updated_at=T0 + 2)
    store.commit([Put(moved, "phase")])  # the whole row
    assert store.get("a") == dataclasses.replace(moved, create_request=b"r")
    fresh = Store(store.engine)  # a writer that knows no rows (after a restart)
    again = dataclasses.replace(moved, updated_at=T0 + 3)
    fresh.commit([Put(again, "resumed")])
    assert store.get("a") == dataclasses.replace(again, create_request=b"r")
    replaced = dataclasses.replace(again, create_request=b"r2", updated_at=T0 + 4)
    fresh.commit([Put(replaced, "create_intent")])  # a new request is written
    assert store.get("a") == replaced


async def test_the_memory_journal_keeps_the_request_too() -> None:
    journal = InMemoryJournal()
    intent = job("a", create_request=b"r")
    await journal.write(Put(intent, "created"))
    await journal.write(Put(dataclasses.replace(intent, create_request=None), "phase"))
    assert journal.jobs["a"].create_request == b"r"


def test_rows_read_by_unfinished_are_updated_in_place_after_a_restart(store: Store) -> None:
    store.commit([Put(job("a", create_request=b"r"), "created"), Put(job("b"), "created")])
    fresh = Store(store.engine)  # a restarted writer
    read = fresh.unfinished()
    assert read == [store.get("a"), store.get("b")]
    executed = statements_of(store.engine)
    stamped = [dataclasses.replace(r, updated_at=T0 + 1, create_request=None) for r in read]
    fresh.commit([Put(record, "resumed") for record in stamped])
    assert not [sql for sql in executed if sql.startswith("INSERT INTO jobs")]
    assert store.get("a") == dataclasses.replace(stamped[0], create_request=b"r")


def test_a_row_changed_after_unfinished_read_it_is_written_whole(store: Store) -> None:
    store.commit([Put(job("a"), "created")])
    fresh = Store(store.engine)
    [read] = fresh.unfinished()
    store.commit([Put(job("a", message="elsewhere", updated_at=T0 + 1), "update")])
    mine = dataclasses.replace(read, phase=RUNNING + 1, updated_at=T0 + 2)
    fresh.commit([Put(mine, "phase")])
    assert store.get("a") == mine


def test_a_row_gone_behind_the_writers_back_is_written_whole(store: Store) -> None:
    store.commit([Put(job("a"), "created"), Put(job("b"), "created")])
    with store.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM jobs WHERE job_id = 'a'"))

    moved = [job(job_id, phase=RUNNING + 1, updated_at=T0 + 1) for job_id in "ab"]
    store.commit([Put(record, "phase") for record in moved])
    assert [store.get("a"), store.get("b")] == moved


def test_a_row_another_writer_changed_is_written_whole(store: Store) -> None:
    store.commit([Put(job("a"), "created"), Put(job("b"), "created")])
    with store.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE jobs SET message = 'x', updated_at = {T0 + 5}"))

    moved = [job(job_id, phase=RUNNING + 1, updated_at=T0 + 1) for job_id in "ab"]
    store.commit([Put(record, "phase") for record in moved])
    assert [store.get("a"), store.get("b")] == moved  # as the put says, like any put


def test_conditional_puts_apply_in_batch_order(store: Store) -> None:
    store.commit([Put(job("old"), "created")])
    first, second = job("new", message="first"), job("new", message="second")
    plain = job("plain")
    outcome = store.commit(
        [
            IfAbsent(Put(job("old", message="again"), "create_intent")),  # 0: in the table
            IfAbsent(Put(first, "create_intent")),  # 1: inserted
            IfAbsent(Put(second, "create_intent")),  # 2: finds the one just inserted
            Put(plain, "created"),
            IfAbsent(Put(job("plain", message="x"), "create_intent")),  # 4: finds the put
        ]
    )

    assert outcome.skipped == {0: job("old"), 2: first, 4: plain}
    assert outcome.fenced == frozenset()
    assert store.get("old") == job("old")
    assert store.get("new") == first
    assert [e.kind for e in store.events("old")] == ["created"]
    assert [e.kind for e in store.events("new")] == ["create_intent"]
    assert [e.kind for e in store.events("plain")] == ["created"]


async def test_write_if_absent_inserts_a_new_job_or_returns_the_existing_one(
    journal: Journal,
) -> None:
    intent = job("a", create_state=CreateState.PENDING, resource_meta=None, create_request=b"r")
    assert await journal.write_if_absent(Put(intent, "create_intent")) is None
    assert await journal.get("a") == intent

    created = dataclasses.replace(intent, create_state=CreateState.CREATED, resource_meta=b"m")
    await journal.write(Put(created, "created"))
    repeat = dataclasses.replace(intent, updated_at=T0 + 9)
    assert await journal.write_if_absent(Put(repeat, "create_intent")) == created

    assert await journal.get("a") == created
    assert [e.kind for e in await journal.events("a")] == ["create_intent", "created"]
    assert journal.statistics().puts_committed == 2


async def test_concurrent_write_if_absent_of_one_job_inserts_it_once(journal: Journal) -> None:
    found: list[JobRecord | None] = []

    async def create(n: int) -> None:
        found.append(await journal.write_if_absent(Put(job("a", message=str(n)), "intent")))

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(create, n)

    winner = await journal.get("a")
    assert winner is not None
    assert sorted(found, key=lambda r: r is not None) == [None, *[winner] * 9]
    assert len(await journal.events("a")) == 1


async def test_in_memory_write_if_absent_behaves_like_the_journal() -> None:
    journal = InMemoryJournal()
    intent = job("a", create_state=CreateState.PENDING)
    assert await journal.write_if_absent(Put(intent, "create_intent")) is None
    assert await journal.write_if_absent(Put(job("a"), "create_intent")) == intent
    assert journal.jobs == {"a": intent}
    assert journal.kinds("a") == ["create_intent"]


async def test_data_survives_closing_and_reopening(journal_url: str) -> None:
    record = job("a", message="still here", log_links='[{"uri": "http://x"}]')
    async with Journal.open(journal_url) as journal:
        await journal.write(Put(job("a", phase=1), "created"), Put(record, "phase"))
        history = await journal.events("a")

    async with Journal.open(journal_url, upgrade=False) as journal:
        assert await journal.get("a") == record
        assert await journal.events("a") == history
        assert await journal.unfinished() == [record]


async def test_closing_commits_what_was_submitted_even_when_cancelled(journal_url: str) -> None:
    written: list[str] = []

    async def write(journal: Journal, job_id: str) -> None:
        await journal.write(Put(job(job_id), "created"))
        written.append(job_id)

    async with trio.open_nursery() as writers:
        with trio.CancelScope() as scope:
            async with Journal.open(journal_url) as journal:
                for i in range(50):
                    writers.start_soon(write, journal, f"job-{i}")
                await trio.testing.wait_all_tasks_blocked()  # every write is submitted
                scope.cancel()
                await trio.sleep_forever()

    assert len(written) == 50
    async with Journal.open(journal_url) as reopened:
        assert len(await reopened.list_jobs(JobQuery(limit=1000))) == 50


async def test_write_after_close_is_refused(journal_url: str) -> None:
    async with Journal.open(journal_url) as journal:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await journal.write(Put(job("late"), "created"))


async def test_open_without_upgrade_refuses_an_unmigrated_database(journal_url: str) -> None:
    with pytest.raises(JournalError, match="expected 0005"):
        async with Journal.open(journal_url, upgrade=False):
            pass


async def test_list_jobs_filters_and_orders_newest_first(journal: Journal) -> None:
    records = [
        job("old-ok", created_at=T0, phase=SUCCEEDED),
        job("mid-run", created_at=T0 + 10, task_type="bq", connector="BigQuery"),
        job("new-run", created_at=T0 + 20),
        job("newest-fail", created_at=T0 + 30, phase=FAILED, connector="BigQuery"),
    ]
    await journal.write(*(Put(r, "phase") for r in records))

    async def ids(**filters: object) -> list[str]:
        query = JobQuery(**filters)  # type: ignore[arg-type]
        return [r.job_id for r in await journal.list_jobs(query)]

    assert await ids() == ["newest-fail", "new-run", "mid-run", "old-ok"]
    assert await ids(phase=RUNNING) == ["new-run", "mid-run"]
    assert await ids(task_type="bq") == ["mid-run"]
    assert await ids(connector="BigQuery") == ["newest-fail", "mid-run"]
    assert await ids(older_than=T0 + 20) == ["mid-run", "old-ok"]
    assert await ids(limit=2) == ["newest-fail", "new-run"]
    assert await ids(limit=2, offset=2) == ["mid-run", "old-ok"]
    assert await ids(phase=RUNNING, connector="BigQuery", older_than=T0 + 11) == ["mid-run"]


def test_migrations_upgrade_from_empty_downgrade_and_upgrade_again(journal_url: str) -> None:
    assert current_revision(journal_url) is None
    upgrade(journal_url)
    assert current_revision(journal_url) == head_revision() == "0005"
    assert _tables(journal_url) >= {"jobs", "events", "replicas", "settings"}

    downgrade(journal_url)
    assert current_revision(journal_url) is None
    assert _tables(journal_url) <= {"alembic_version"}

    upgrade(journal_url)
    assert current_revision(journal_url) == head_revision()


async def test_upgrading_computes_live_for_the_rows_already_there(journal_url: str) -> None:
    upgrade(journal_url, "0004")  # before the live column
    grid = itertools.product(CreateState, DeleteState, [0, RUNNING, *TERMINAL_PHASES])
    records = [
        job(f"{create}-{delete}-{phase}", create_state=create, delete_state=delete, phase=phase)
        for create, delete, phase in grid
    ]
    engine = create_engine(journal_url)
    try:
        Store(engine).commit([Put(record, "phase") for record in records])
    finally:
        engine.dispose()
    expected = sorted(r.job_id for r in records if is_unfinished(r))

    upgrade(journal_url)
    async with Journal.open(journal_url) as journal:
        assert sorted(r.job_id for r in await journal.unfinished()) == expected

    downgrade(journal_url, "0004")  # the rows stay; the old index has the rule again
    engine = create_engine(journal_url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(f"SELECT job_id FROM jobs WHERE {UNFINISHED_RULE}")
            assert sorted(job_id for (job_id,) in rows) == expected
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_schema_the_code_uses(journal_url: str) -> None:
    upgrade(journal_url)
    engine = create_engine(journal_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_sqlite_unfinished_index_predicate_is_the_query_predicate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN SELECT job_id FROM jobs WHERE {UNFINISHED}"
            ).all()
    finally:
        engine.dispose()
    assert "ix_jobs_unfinished" in str(plan)  # the migration's index serves the query


def test_the_stored_final_phases_are_the_sdks_terminal_phases() -> None:
    assert tuple(sorted(int(phase) for phase in connectors.TERMINAL_PHASES)) == TERMINAL_PHASES
    assert (SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED) == (
        connectors.Phase.SUCCEEDED,
        connectors.Phase.ABORTED,
        connectors.Phase.FAILED,
        connectors.Phase.RETRYABLE_FAILED,
    )
    assert "phase NOT IN (3, 4, 5, 8)" in UNFINISHED_RULE


def test_the_migrated_unfinished_index_has_the_rules_predicate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            index, table = (
                connection.exec_driver_sql(
                    f"SELECT sql FROM sqlite_master WHERE name = '{name}'"
                ).scalar_one()
                for name in ("ix_jobs_unfinished", "jobs")
            )
    finally:
        engine.dispose()
    # The index is on the column the database computes from the rule: a change to the
    # rule needs a migration that rebuilds the column with it.
    assert index.endswith(f"WHERE {UNFINISHED}")
    assert f"GENERATED ALWAYS AS ({UNFINISHED_RULE})" in table


def test_settled_jobs_are_those_with_nothing_left_to_cancel() -> None:
    grid = itertools.product(CreateState, DeleteState, [0, RUNNING, *TERMINAL_PHASES])
    for create, delete, phase in grid:
        record = job("a", create_state=create, delete_state=delete, phase=phase)
        final = phase in TERMINAL_PHASES
        no_job = create in (CreateState.FAILED, CreateState.ABANDONED)
        expected = delete == DeleteState.DONE or (delete == DeleteState.NONE and (final or no_job))
        assert is_settled(record) == expected, record


def test_urls_are_normalized_to_supported_drivers(tmp_path: Path) -> None:
    for url in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"):
        assert normalize_url(url).drivername == "postgresql+psycopg"
    for unsupported in ("sqlite://", "sqlite:///:memory:", "mysql://u@h/db"):
        with pytest.raises(ValueError, match="supported"):
            normalize_url(unsupported)


async def test_sqlite_journal_is_a_wal_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    async with Journal.open(url) as journal:
        await journal.write(Put(job("a"), "created"))
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()


async def test_sqlite_journal_in_a_missing_directory_is_an_error_not_a_new_tree(
    tmp_path: Path,
) -> None:
    with pytest.raises(JournalError, match="no directory"):
        async with Journal.open(f"sqlite:///{tmp_path / 'a' / 'b' / 'journal.db'}"):
            pass
    assert not (tmp_path / "a").exists()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- fencing: a write applies only while the row is still the writer's ----------------------


def _adopt(store: Store, job_id: str, owner: str | None, epoch: int) -> None:
    """Another replica takes the job (what a takeover does to the row)."""
    with store.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE jobs SET owner = :o, epoch = :e WHERE job_id = :j"),
            {"o": owner, "e": epoch, "j": job_id},
        )


def test_a_put_of_a_row_with_another_owner_is_fenced(store: Store) -> None:
    mine = job("a", owner="r1", epoch=1)
    store.commit([Put(mine, "created"), Put(job("b", owner="r1", epoch=1), "created")])
    _adopt(store, "a", "r2", 2)

    late = dataclasses.replace(mine, phase=SUCCEEDED, updated_at=T0 + 1)  # fast-path UPDATE
    other = job("b", owner="r1", epoch=1, message="fine", updated_at=T0 + 1)
    outcome = store.commit([Put(late, "phase"), Put(other, "phase")])

    assert outcome.fenced == frozenset({0})
    assert store.get("a") == dataclasses.replace(mine, owner="r2", epoch=2)
    assert store.get("b") == other
    assert [e.kind for e in store.events("a")] == ["created"]


def test_a_whole_row_put_is_fenced_too(store: Store) -> None:
    mine = job("a", owner="r1", epoch=1)
    store.commit([Put(mine, "created")])
    _adopt(store, "a", "r1", 2)  # same owner, new epoch: a restarted replica took it back

    changed_blob = dataclasses.replace(mine, outputs=b"o", updated_at=T0 + 1)  # upsert path
    outcome = store.commit([Put(changed_blob, "phase"), Put(changed_blob, "phase")])

    assert outcome.fenced == frozenset({0, 1})
    assert store.get("a") == dataclasses.replace(mine, epoch=2)


def test_a_put_expecting_the_old_owner_takes_the_row(store: Store) -> None:
    store.commit([Put(job("a", owner="r1", epoch=1), "created")])
    taken = job("a", owner="r2", epoch=2, updated_at=T0 + 1)

    assert store.commit([Put(taken, "adopted")]).fenced == frozenset({0})  # r2 != r1
    assert store.commit([Put(taken, "adopted", expect=("r1", 1))]).fenced == frozenset()
    assert store.get("a") == taken


async def test_a_fenced_write_raises_fenced_out_and_others_commit(journal: Journal) -> None:
    await journal.write(Put(job("a", owner="r1", epoch=1), "created"))
    await journal.write(Put(job("a", owner="r2", epoch=2), "adopted", expect=("r1", 1)))

    refused: list[FencedOut] = []

    async def write_late_a() -> None:
        with pytest.raises(FencedOut) as raised:
            await journal.write(Put(job("a", owner="r1", epoch=1, message="late"), "phase"))
        refused.append(raised.value)

    async with trio.open_nursery() as nursery:  # the two puts share one batch
        nursery.start_soon(write_late_a)
        nursery.start_soon(journal.write, Put(job("b", owner="r1", epoch=1), "created"))
    assert [error.job_ids for error in refused] == [("a",)]
    assert (await journal.get("a")) == job("a", owner="r2", epoch=2)
    assert (await journal.get("b")) == job("b", owner="r1", epoch=1)
    assert journal.statistics().puts_fenced == 1


async def test_in_memory_journal_fences_like_the_real_one() -> None:
    journal = InMemoryJournal()
    await journal.write(Put(job("a", owner="r1", epoch=1), "created"))
    await journal.write(Put(job("a", owner="r2", epoch=2), "adopted", expect=("r1", 1)))

    with pytest.raises(FencedOut):
        await journal.write(Put(job("a", owner="r1", epoch=1, message="late"), "phase"))
    assert journal.jobs["a"] == job("a", owner="r2", epoch=2)
    assert journal.kinds("a") == ["created", "adopted"]


def test_a_journal_at_0001_upgrades_keeping_its_jobs_unowned(journal_url: str) -> None:
    upgrade(journal_url, "0001")
    engine = create_engine(journal_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO jobs (job_id, task_type, task_type_version, connector, attempt,"
                    " create_state, delete_state, phase, created_at, updated_at, message,"
                    " log_links) VALUES ('old', 'echo', 0, 'E', 0, 'created', 'none', 2, 1, 1,"
                    " '', '[]')"
                )
            )
        upgrade(journal_url)
        record = Store(engine).get("old")
    finally:
        engine.dispose()
    assert record is not None
    assert (record.owner, record.epoch) == (None, 0)


async def test_a_setting_is_stored_once_and_the_first_value_wins(journal: Journal) -> None:
    assert await journal.setting("meta_key", "first") == "first"
    assert await journal.setting("meta_key", "second") == "first"


async def test_a_deleted_sqlite_file_is_lost_at_the_next_write_and_stays_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with Journal.open(f"sqlite:///{path}") as journal:
        await journal.write(Put(job("before"), "created"))
        for suffix in ("", "-wal", "-shm"):
            await trio.Path(f"{path}{suffix}").unlink(missing_ok=True)
        with pytest.raises(JournalLost, match="was deleted"):
            await journal.write(Put(job("after"), "created"))
        assert journal.lost is not None
        assert "was deleted" in await journal.wait_lost()
        with pytest.raises(JournalLost):
            await journal.get("before")
    assert not await trio.Path(path).exists()  # never recreated


def test_a_sqlite_write_transaction_takes_the_write_lock_as_it_begins(tmp_path: Path) -> None:
    """A replica's heartbeat writes beside the journal's writer: a deferred transaction that
    reads, then writes after the other committed, fails at once ("database is locked");
    ``writing`` takes the lock first, so the other waits instead."""
    from supervisor.journal import create_engine, writing

    engine = create_engine(f"sqlite:///{tmp_path / 'j.db'}")
    try:
        with engine.begin() as setup:
            setup.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        other = sqlite3.connect(tmp_path / "j.db", timeout=0.05)
        with engine.connect() as deferred, deferred.begin():
            deferred.exec_driver_sql("SELECT count(*) FROM t").all()
            other.execute("INSERT INTO t VALUES (1)")
            other.commit()  # lands between the read and the write
            with pytest.raises(sa.exc.OperationalError, match="locked"):
                deferred.exec_driver_sql("INSERT INTO t VALUES (2)")
        with writing(engine) as first:
            first.exec_driver_sql("SELECT count(*) FROM t").all()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO t VALUES (3)")  # waits for ``first``: times out
            first.exec_driver_sql("INSERT INTO t VALUES (4)")
        other.execute("INSERT INTO t VALUES (5)")
        other.commit()
        other.close()
    finally:
        engine.dispose()
