"""The supervisor's guarantees, on Trio's MockClock, against an in-memory external service.

Every test runs a real Supervisor with real actors over an InMemoryJournal and a
FakeService; time is virtual, so "run for 100 s" is instant and call counts are exact.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

from connectors import ConnectorRegistry, Phase
from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Connection,
    Identifier,
    TaskExecutionIdentifier,
    TaskMetadata,
    TaskTemplate,
)
from supervisor import ConnectorFailed, InvalidArgument, Supervisor
from supervisor.journal import CreateState, DeleteState, InMemoryJournal
from supervisor.wire import MetaSeal

CATEGORY = pb.TaskCategory(name="fake", version=0)
KEY = b"a test key of thirty-two bytes!!"
SEAL = MetaSeal(KEY)


class _NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def create_request(
    name: str = "t1",
    *,
    attempt: int = 0,
    timeout: float | None = None,
    secrets: dict[str, str] | None = None,
) -> pb.CreateTaskRequest:
    metadata = TaskMetadata(timeout=timedelta(seconds=timeout)) if timeout else None
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="fake", metadata=metadata),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(
                task_id=Identifier(project="p", domain="d", name=name), retry_attempt=attempt
            )
        ),
        connection=Connection(secrets=secrets) if secrets else None,
    )


def get_request(meta: bytes, secrets: dict[str, str] | None = None) -> pb.GetTaskRequest:
    return pb.GetTaskRequest(
        resource_meta=meta,
        task_category=CATEGORY,
        connection=Connection(secrets=secrets) if secrets else None,
    )


def delete_request(meta: bytes) -> pb.DeleteTaskRequest:
    return pb.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY)


def meta_of(job_id: str) -> bytes:
    """The resource_meta a supervisor with ``KEY`` hands out for the fake job ``job_id``."""
    return SEAL.seal("fake", 0, FakeMeta(job_id=job_id).encode())


class World:
    """One external service and one journal that outlive any number of supervisors."""

    def __init__(self, *, adopt_unsigned: bool = False, **connector_options: Any) -> None:
        self.adopt_unsigned = adopt_unsigned
        self.service = FakeService()
        self.journal = InMemoryJournal()
        self.connector = FakeConnector(self.service, **connector_options)

    @asynccontextmanager
    async def supervisor(self) -> AsyncIterator[Supervisor]:
        registry = ConnectorRegistry([self.connector])
        sup = Supervisor(
            registry,
            self.journal,
            wall_clock=trio.current_time,
            rng=_NoJitter(),
            meta_key=KEY,
            adopt_unsigned=self.adopt_unsigned,
        )
        async with sup.running():
            yield sup


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Let virtual time run until ``predicate`` holds (fails after a virtual hour)."""
    with trio.fail_after(3600):
        while not predicate():  # noqa: ASYNC110 - virtual time: instant under MockClock
            await trio.sleep(0.5)


async def phase_of(sup: Supervisor, meta: bytes) -> Phase:
    response = await sup.get_task(get_request(meta))
    assert response.resource is not None
    return Phase(response.resource.phase)


# -- create ---------------------------------------------------------------------------------


async def test_create_returns_resource_meta_and_creates_once(autojump_clock: Any) -> None:
    world = World()
    async with world.supervisor() as sup:
        first = await sup.create_task(create_request())
        again = await sup.create_task(create_request())
    assert first.resource_meta == again.resource_meta == meta_of("job-1")
    assert world.service.calls["create"] == 1


async def test_concurrent_creates_of_one_job_create_it_once(autojump_clock: Any) -> None:
    world = World()
    world.service.latency = 1.0
    answers: list[bytes] = []
    async with world.supervisor() as sup:

        async def create() -> None:
            answers.append((await sup.create_task(create_request())).resource_meta)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(create)
    assert set(answers) == {meta_of("job-1")}
    assert world.service.calls["create"] == 1


async def test_each_retry_attempt_is_its_own_job(autojump_clock: Any) -> None:
    world = World()
    async with world.supervisor() as sup:
        first = await sup.create_task(create_request(attempt=0))
        second = await sup.create_task(create_request(attempt=1))
    assert first.resource_meta != second.resource_meta
    assert world.service.calls["create"] == 2


async def test_create_passes_a_deterministic_idempotency_key(autojump_clock: Any) -> None:
    world = World()
    async with world.supervisor() as sup:
        await sup.create_task(create_request())
    key = world.connector.seen_kwargs[0]["idempotency_key"]
    assert key == next(iter(world.journal.jobs))
    assert len(key) == 32


async def test_create_failure_is_reported_and_a_repeat_tries_again(autojump_clock: Any) -> None:
    world = World()
    world.service.fail_next("create", RuntimeError("quota exceeded"))
    async with world.supervisor() as sup:
        with pytest.raises(ConnectorFailed, match="quota exceeded"):
            await sup.create_task(create_request())
        response = await sup.create_task(create_request())
    assert response.resource_meta == meta_of("job-1")
    assert world.service.calls["create"] == 2


async def test_create_intent_is_journalled_before_the_connector_is_called(
    autojump_clock: Any,
) -> None:
    world = World()
    world.journal.fail_next(OSError("disk full"))
    async with world.supervisor() as sup:
        with pytest.raises(OSError, match="disk full"):
            await sup.create_task(create_request())
    assert world.service.calls["create"] == 0


# -- polling --------------------------------------------------------------------------------


async def test_polls_once_per_interval(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        await sup.create_task(create_request())
        await trio.sleep(100.5)
    assert world.service.calls["get"] == 10


async def test_get_task_never_calls_the_external_service(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        await trio.sleep(15)
        world.service.set_state("job-1", "RUNNING")
        for _ in range(1000):
            await sup.get_task(get_request(meta))
        await trio.sleep(10)
        assert await phase_of(sup, meta) == Phase.RUNNING
    assert world.service.calls["get"] == 2


async def test_get_task_reports_outputs_and_log_links_on_success(autojump_clock: Any) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "DONE", outputs={"rows": 3})
        await trio.sleep(6)
        response = await sup.get_task(get_request(meta))
    resource = response.resource
    assert resource is not None
    assert resource.phase == Phase.SUCCEEDED
    assert resource.outputs is not None
    assert resource.outputs.literals[0].name == "rows"
    assert [link.name for link in resource.log_links] == ["fake console"]


async def test_finished_job_is_answered_from_the_journal(autojump_clock: Any) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "DONE")
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.SUCCEEDED
    assert world.service.calls["get"] == 1


async def test_transient_errors_back_off_exponentially(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    times: list[float] = []
    original = world.service.get

    async def timed_get(job_id: str) -> Any:
        times.append(trio.current_time())
        return await original(job_id)

    world.service.get = timed_get  # type: ignore[method-assign]
    async with world.supervisor() as sup:
        start = trio.current_time()
        await sup.create_task(create_request())
        for _ in range(3):
            world.service.fail_next("get")
        await trio.sleep(200)
    gaps = [round(b - a) for a, b in zip([start, *times], times, strict=False)]
    assert gaps[:5] == [10, 20, 40, 80, 10]


async def test_poll_error_message_is_shown_and_cleared(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.fail_next("get", ConnectionError("503 from upstream"))
        await trio.sleep(11)
        response = await sup.get_task(get_request(meta))
        assert response.resource is not None
        assert "503 from upstream" in response.resource.message
        await trio.sleep(25)
        response = await sup.get_task(get_request(meta))
    assert response.resource is not None
    assert response.resource.message == "pending"


async def test_hung_call_times_out_and_is_retried(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0, call_timeout=5.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.hang_next("get")
        world.service.set_state("job-1", "DONE")
        await trio.sleep(16)
        response = await sup.get_task(get_request(meta))
        assert response.resource is not None
        assert "TooSlowError" in response.resource.message
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.SUCCEEDED


async def test_permanent_error_fails_the_job(autojump_clock: Any) -> None:
    from connectors import PermanentError

    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.fail_next("get", PermanentError("table not found"))
        await trio.sleep(11)
        response = await sup.get_task(get_request(meta))
    assert response.resource is not None
    assert response.resource.phase == Phase.FAILED
    assert "table not found" in response.resource.message


async def test_lost_job_is_retryable_failed(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.lose("job-1")
        await trio.sleep(11)
        assert await phase_of(sup, meta) == Phase.RETRYABLE_FAILED


async def test_concurrent_calls_are_capped_per_connector(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0, max_concurrent_calls=3)
    world.service.latency = 2.0
    async with world.supervisor() as sup:
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(sup.create_task, create_request(f"t{i}"))
        await trio.sleep(60)
    assert world.service.max_in_flight == 3
    assert world.service.calls["create"] == 12


async def test_timeout_cancels_the_external_job_and_fails(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request(timeout=35))).resource_meta
        world.service.set_state("job-1", "RUNNING")
        await trio.sleep(36)
        response = await sup.get_task(get_request(meta))
    assert response.resource is not None
    assert response.resource.phase == Phase.FAILED
    assert "timed out after 35s" in response.resource.message
    assert world.service.jobs["job-1"].cancels == 1


# -- delete ---------------------------------------------------------------------------------


async def test_delete_storm_cancels_external_job_once(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    world.service.latency = 0.5
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "RUNNING")
        answers: list[pb.DeleteTaskResponse] = []

        async def delete() -> None:
            answers.append(await sup.delete_task(delete_request(meta)))

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(delete)
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert len(answers) == 100
    assert world.service.calls["delete"] == 1


async def test_delete_answers_once_the_intent_is_journalled(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.hang_next("delete")
        with trio.fail_after(1):
            await sup.delete_task(delete_request(meta))
        record = world.journal.jobs[next(iter(world.journal.jobs))]
        assert record.delete_state == DeleteState.REQUESTED


async def test_delete_interrupts_a_poll_in_flight(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.hang_next("get")
        await trio.sleep(11)
        with trio.fail_after(1):
            await sup.delete_task(delete_request(meta))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.calls["delete"] == 1


async def test_delete_while_the_cancel_hangs_answers_at_once(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.hang_next("delete")
        await sup.delete_task(delete_request(meta))
        await trio.testing.wait_all_tasks_blocked()  # the actor is inside the hung cancel
        with trio.fail_after(1):
            await sup.delete_task(delete_request(meta))
    assert world.service.calls["delete"] == 1


async def test_credentials_arriving_during_a_poll_do_not_interrupt_it(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    world.service.latency = 2.0
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request(secrets={"token": "a"}))).resource_meta
        # Created at 2 s; the first poll starts at 12 s and is in flight until 14 s.
        await trio.sleep(11)
        await sup.get_task(get_request(meta, secrets={"token": "b"}))
        await trio.sleep(12)
        assert world.service.calls["get"] == 2  # at 12 s and 24 s: none cut short, none extra
    assert world.connector.seen_kwargs[-1]["token"] == "b"


async def test_delete_of_a_job_waiting_for_credentials_cancels_once_they_come(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request(secrets={"token": "abc"}))).resource_meta
    async with world.supervisor() as sup:
        await trio.sleep(5)
        with trio.fail_after(1):
            await sup.delete_task(delete_request(meta))  # answered: the intent is journalled
        await trio.sleep(60)
        assert world.service.calls["delete"] == 0  # no secrets, no call
        await sup.get_task(get_request(meta, secrets={"token": "abc"}))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.calls["delete"] == 1
    assert world.connector.seen_kwargs[-1]["token"] == "abc"


async def test_delete_of_finished_job_makes_no_call(autojump_clock: Any) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "DONE")
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        await sup.delete_task(delete_request(meta))
        await sup.delete_task(delete_request(meta))
    assert world.service.calls["delete"] == 0


async def test_delete_of_deleted_job_makes_no_second_call(autojump_clock: Any) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        await sup.delete_task(delete_request(meta))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        await sup.delete_task(delete_request(meta))
    assert world.service.calls["delete"] == 1


async def test_delete_of_unknown_job_answers_ok(autojump_clock: Any) -> None:
    world = World()
    async with world.supervisor() as sup:
        with trio.fail_after(1):
            await sup.delete_task(delete_request(meta_of("never-existed")))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
    assert world.service.calls["delete"] == 1  # "not found" counts as deleted


async def test_delete_retries_failed_cancels(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.fail_next("delete")
        world.service.fail_next("delete")
        await sup.delete_task(delete_request(meta))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.calls["delete"] == 3
    assert world.service.jobs["job-1"].cancels == 1


# -- adoption -------------------------------------------------------------------------------


async def test_get_task_adopts_a_job_it_never_saw(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    job = await world.service.create("elsewhere", {})
    world.service.set_state(job.job_id, "RUNNING")
    async with world.supervisor() as sup:
        assert await phase_of(sup, meta_of(job.job_id)) == Phase.RUNNING
        world.service.set_state(job.job_id, "DONE")
        await trio.sleep(11)
        assert await phase_of(sup, meta_of(job.job_id)) == Phase.SUCCEEDED
    assert "adopted" in world.journal.kinds(next(iter(world.journal.jobs)))


async def test_a_delete_storm_of_a_never_seen_job_adopts_it_once_and_cancels_once(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    job = await world.service.create("elsewhere", {})
    world.service.set_state(job.job_id, "RUNNING")
    meta = meta_of(job.job_id)
    async with world.supervisor() as sup:
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(sup.delete_task, delete_request(meta))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        await sup.delete_task(delete_request(meta))  # after the actor ended: no re-adoption
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.calls["delete"] == 1
    assert world.service.jobs[job.job_id].cancels == 1
    kinds = world.journal.kinds(next(iter(world.journal.jobs)))
    assert kinds == ["adopted", "deleted"]


async def test_a_meta_without_a_mac_is_refused_and_nothing_is_adopted(autojump_clock: Any) -> None:
    world = World()
    job = await world.service.create("elsewhere", {})
    unsigned = FakeMeta(job_id=job.job_id).encode()
    async with world.supervisor() as sup:
        with pytest.raises(InvalidArgument, match=r"carries no MAC.*--adopt-unsigned"):
            await sup.get_task(get_request(unsigned))
        with pytest.raises(InvalidArgument, match="carries no MAC"):
            await sup.delete_task(delete_request(unsigned))
        logs = pb.GetTaskLogsRequest(resource_meta=unsigned, task_category=CATEGORY)
        with pytest.raises(InvalidArgument, match="carries no MAC"):
            async for _ in sup.get_task_logs(logs):
                pass
        metrics = pb.GetTaskMetricsRequest(resource_meta=unsigned, task_category=CATEGORY)
        with pytest.raises(InvalidArgument, match="carries no MAC"):
            await sup.get_task_metrics(metrics)
        assert sup.statistics()["live_jobs"] == 0
    assert not world.journal.jobs
    assert world.service.calls["get"] == world.service.calls["delete"] == 0


async def test_a_meta_with_a_forged_or_foreign_mac_is_refused(autojump_clock: Any) -> None:
    world = World(adopt_unsigned=True)  # even then: a wrong MAC is never accepted
    other = MetaSeal(b"another key, another deployment!").seal("fake", 0, b'{"job_id":"x"}')
    tampered = meta_of("job-1").replace(b"job-1", b"job-2")
    async with world.supervisor() as sup:
        for meta in (other, tampered, SEAL.seal("fake", 1, b'{"job_id":"x"}')):
            with pytest.raises(InvalidArgument, match="MAC does not verify"):
                await sup.get_task(get_request(meta))
    assert not world.journal.jobs


async def test_adopt_unsigned_adopts_a_meta_without_a_mac(autojump_clock: Any) -> None:
    world = World(adopt_unsigned=True)
    job = await world.service.create("elsewhere", {})
    world.service.set_state(job.job_id, "RUNNING")
    async with world.supervisor() as sup:
        assert await phase_of(sup, FakeMeta(job_id=job.job_id).encode()) == Phase.RUNNING
    assert "adopted" in world.journal.kinds(next(iter(world.journal.jobs)))


async def test_a_known_job_whose_meta_predates_macs_keeps_working(autojump_clock: Any) -> None:
    # A journal row written before MACs holds the connector's bare bytes, as handed out.
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
    bare = FakeMeta(job_id="job-1").encode()
    for job_id, record in list(world.journal.jobs.items()):
        world.journal.jobs[job_id] = dataclasses.replace(record, resource_meta=bare)
    assert meta != bare
    async with world.supervisor() as sup:
        assert await phase_of(sup, bare) == Phase.QUEUED
        await sup.delete_task(delete_request(bare))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
    assert world.service.calls["delete"] == 1


async def test_without_a_key_one_is_generated_into_the_journal_and_kept(
    autojump_clock: Any,
) -> None:
    journal = InMemoryJournal()
    registry = ConnectorRegistry([FakeConnector(FakeService())])
    metas = []
    for _ in range(2):  # a restart (or a replica on the same journal) uses the same key
        async with Supervisor(registry, journal, wall_clock=trio.current_time).running() as sup:
            metas.append((await sup.create_task(create_request())).resource_meta)
    key = journal.settings["resource_meta_key"]
    assert len(key) == 64
    assert metas[0] == metas[1] == MetaSeal(key.encode()).seal("fake", 0, b'{"job_id":"job-1"}')


async def test_garbage_resource_meta_is_invalid_argument(autojump_clock: Any) -> None:
    world = World()
    async with world.supervisor() as sup:
        with pytest.raises(InvalidArgument, match="resource_meta"):
            await sup.get_task(get_request(b"\x00not json"))
        with pytest.raises(InvalidArgument, match="resource_meta"):
            await sup.delete_task(delete_request(b'{"wrong": 1}'))
    assert not world.journal.jobs


def answer_now(sup: Supervisor, meta: bytes, secrets: dict[str, str] | None = None) -> bytes | None:
    return sup.answer_now(CATEGORY.name, CATEGORY.version, meta, secrets or {})


def phase_in(answer: bytes) -> Phase:
    resource = pb.GetTaskResponse.parse(answer).resource
    assert resource is not None
    return Phase(resource.phase)


async def test_answer_now_is_the_encoded_get_task_answer_of_a_live_job(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "RUNNING")
        await trio.sleep(11)
        answer = answer_now(sup, meta)
        assert answer == bytes(await sup.get_task(get_request(meta)))
        assert answer is answer_now(sup, meta)  # encoded once, not per call
    assert answer is not None
    assert phase_in(answer) == Phase.RUNNING


async def test_answer_now_changes_when_the_phase_changes(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        before = answer_now(sup, meta)
        world.service.set_state("job-1", "RUNNING")
        await trio.sleep(11)
        after = answer_now(sup, meta)
    assert before is not None
    assert after is not None
    assert after != before
    assert [phase_in(before), phase_in(after)] == [Phase.QUEUED, Phase.RUNNING]


async def test_answer_now_leaves_unknown_and_finished_jobs_to_get_task(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        assert answer_now(sup, meta_of("never-seen")) is None
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "DONE")
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert answer_now(sup, meta) is None  # its actor is gone: get_task reads the journal
        assert await phase_of(sup, meta) == Phase.SUCCEEDED
    assert len(world.journal.jobs) == 1  # nothing adopted


async def test_answer_now_offers_credentials_to_a_job_waiting_for_them(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request(secrets={"token": "abc"}))).resource_meta
    polls_before = world.service.calls["get"]
    async with world.supervisor() as sup:
        await trio.sleep(60)
        assert world.service.calls["get"] == polls_before
        assert answer_now(sup, meta, secrets={"token": "abc"}) is not None
        await trio.sleep(1)
        assert world.service.calls["get"] == polls_before + 1
    assert world.connector.seen_kwargs[-1]["token"] == "abc"


# -- resume ---------------------------------------------------------------------------------


async def test_restart_resumes_polling_unfinished_jobs(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
    world.service.set_state("job-1", "DONE")
    async with world.supervisor() as sup:
        assert sup.resumed == 1
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.SUCCEEDED


async def test_restart_finishes_a_pending_cancel(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.hang_next("delete")
        await sup.delete_task(delete_request(meta))
        await trio.testing.wait_all_tasks_blocked()
    assert world.service.jobs["job-1"].cancels == 0
    async with world.supervisor() as sup:
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.jobs["job-1"].cancels == 1


class _CancelsThenHangs(FakeConnector):
    """Its cancels reach the service, then hang: a crash lands after the external cancel
    and before the journal records it."""

    hang_after_delete = True

    async def delete(self, resource_meta: FakeMeta, **kwargs: Any) -> None:
        await super().delete(resource_meta, **kwargs)
        if self.hang_after_delete:
            await trio.sleep_forever()


async def crash_after_the_external_cancel(world: World, meta: bytes) -> None:
    connector = _CancelsThenHangs(world.service, poll_interval=10.0)
    world.connector = connector
    async with world.supervisor() as sup:
        await sup.delete_task(delete_request(meta))
        await wait_for(lambda: world.service.jobs["job-1"].cancels == 1)
    connector.hang_after_delete = False


async def test_restart_after_a_cancel_that_reached_the_service_does_not_cancel_again(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "RUNNING")
    await crash_after_the_external_cancel(world, meta)
    async with world.supervisor() as sup:
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.ABORTED
    assert world.service.jobs["job-1"].cancels == 1
    assert world.service.calls["delete"] == 1
    kinds = world.journal.kinds(next(iter(world.journal.jobs)))
    assert kinds[-3:] == ["delete_intent", "resumed", "deleted"]  # the restart in between
    assert json.loads(world.journal.history[-1].detail)["reconciled"] is True


async def test_restart_with_a_pending_cancel_of_a_job_that_finished_makes_no_call(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.hang_next("delete")
        await sup.delete_task(delete_request(meta))
        await trio.testing.wait_all_tasks_blocked()
    world.service.set_state("job-1", "DONE", outputs={"x": 1})
    async with world.supervisor() as sup:
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        assert await phase_of(sup, meta) == Phase.SUCCEEDED
    assert world.service.calls["delete"] == 1  # the one cut short by the crash
    assert world.service.jobs["job-1"].cancels == 0
    record = next(iter(world.journal.jobs.values()))
    assert record.delete_state == DeleteState.DONE


async def crash_during_create(world: World) -> None:
    world.service.hang_next("create")
    async with world.supervisor() as sup, trio.open_nursery() as nursery:
        nursery.start_soon(sup.create_task, create_request())
        await wait_for(lambda: world.service.calls["create"] == 1)
        nursery.cancel_scope.cancel()


async def test_restart_reconciles_an_idempotent_create_without_duplicating(
    autojump_clock: Any,
) -> None:
    world = World(idempotent=True)
    await crash_during_create(world)
    async with world.supervisor() as sup:
        response = await sup.create_task(create_request())
    assert response.resource_meta == meta_of("job-1")
    assert world.service.calls["create"] == 2
    assert len(world.service.jobs) == 1


async def test_restart_refuses_to_repeat_a_create_that_cannot_be_deduplicated(
    autojump_clock: Any,
) -> None:
    world = World(idempotent=False)
    await crash_during_create(world)
    async with world.supervisor() as sup:
        with pytest.raises(ConnectorFailed, match="cannot de-duplicate"):
            await sup.create_task(create_request())
        with pytest.raises(ConnectorFailed, match="cannot de-duplicate"):
            await sup.create_task(create_request())
    record = next(iter(world.journal.jobs.values()))
    assert record.create_state == CreateState.ABANDONED
    assert world.service.calls["create"] == 1


async def test_live_jobs_hold_no_request_and_the_journal_keeps_it(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        await sup.create_task(create_request("a"))
        world.service.set_state("job-1", "RUNNING")
        await trio.sleep(11)  # a transition, written without the request
        [live] = sup.live_records()
        assert live.create_request is None
    journalled = world.journal.jobs[live.job_id]
    assert journalled.phase == Phase.RUNNING
    assert pb.CreateTaskRequest.parse(journalled.create_request or b"").output_prefix
    async with world.supervisor() as sup:  # resumed: dropped again
        assert [r.create_request for r in sup.live_records()] == [None]
    assert world.journal.jobs[live.job_id].create_request == journalled.create_request


class _SeesPrefixes(FakeConnector):
    """Records the output prefix of every create: what the request said."""

    def __init__(self, service: FakeService, **options: Any) -> None:
        super().__init__(service, **options)
        self.prefixes: list[str] = []

    async def create(self, task_template: Any, output_prefix: str, *args: Any, **kw: Any) -> Any:
        self.prefixes.append(output_prefix)
        return await super().create(task_template, output_prefix, *args, **kw)


async def test_a_resumed_pending_create_reads_its_request_back(autojump_clock: Any) -> None:
    world = World(idempotent=True)
    await crash_during_create(world)
    world.connector = connector = _SeesPrefixes(world.service, idempotent=True)
    async with world.supervisor() as sup:
        await wait_for(lambda: world.service.calls["create"] == 2)
        await wait_for(lambda: sup.live_records()[0].resource_meta is not None)
        assert [r.create_request for r in sup.live_records()] == [None]
    assert connector.prefixes == ["s3://bucket/out"]  # from the journalled request


async def test_a_resumed_job_without_its_request_still_waits_for_credentials(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request(secrets={"token": "abc"}))).resource_meta
    polls_before = world.service.calls["get"]
    async with world.supervisor() as sup:
        await trio.sleep(60)
        [live] = sup.live_records()
        assert live.create_request is None  # the actor knows from its handle, not its record
        response = await sup.get_task(get_request(meta))
        assert response.resource is not None
        assert "waiting for credentials" in response.resource.message
        assert world.service.calls["get"] == polls_before


# -- secrets --------------------------------------------------------------------------------


async def test_secrets_never_reach_the_journal(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        await sup.create_task(create_request(secrets={"token": "s3cr3t-value"}))
        await trio.sleep(25)
    assert world.connector.seen_kwargs[0]["token"] == "s3cr3t-value"
    stored = repr(world.journal.jobs) + repr(world.journal.history)
    assert "s3cr3t-value" not in stored
    assert "token" in stored  # the key is kept: a resumed job knows it must wait


async def test_resumed_job_waits_for_credentials(autojump_clock: Any) -> None:
    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request(secrets={"token": "abc"}))).resource_meta
    polls_before = world.service.calls["get"]
    async with world.supervisor() as sup:
        await trio.sleep(60)
        response = await sup.get_task(get_request(meta))
        assert response.resource is not None
        assert "waiting for credentials" in response.resource.message
        assert world.service.calls["get"] == polls_before
        await sup.get_task(get_request(meta, secrets={"token": "abc"}))
        await trio.sleep(1)
        assert world.service.calls["get"] == polls_before + 1
    assert world.connector.seen_kwargs[-1]["token"] == "abc"


async def test_history_records_every_transition(autojump_clock: Any) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        meta = (await sup.create_task(create_request())).resource_meta
        world.service.set_state("job-1", "RUNNING")
        await trio.sleep(6)
        await sup.delete_task(delete_request(meta))
        await wait_for(lambda: not sup.statistics()["live_jobs"])
    kinds = world.journal.kinds(next(iter(world.journal.jobs)))
    assert kinds == ["create_intent", "created", "phase", "delete_intent", "deleted"]
    details = [json.loads(e.detail) for e in world.journal.history]
    assert details[2] == {"phase": "RUNNING"}


async def test_retry_after_from_the_service_is_honoured(autojump_clock: Any) -> None:
    class Throttled(Exception):
        retry_after = 95.0

    world = World(poll_interval=10.0)
    async with world.supervisor() as sup:
        await sup.create_task(create_request())
        world.service.fail_next("get", Throttled("429 Too Many Requests"))
        await trio.sleep(10.5)
        assert world.service.calls["get"] == 1
        await trio.sleep(90)
        assert world.service.calls["get"] == 1
        await trio.sleep(10)
        assert world.service.calls["get"] == 2


# -- fencing ----------------------------------------------------------------------------


async def test_an_actor_fenced_out_by_a_new_owner_stops_without_touching_its_job(
    autojump_clock: Any,
) -> None:
    world = World(poll_interval=5.0)
    async with world.supervisor() as sup:
        await sup.create_task(create_request())
        (job_id,) = world.journal.jobs
        taken = dataclasses.replace(world.journal.jobs[job_id], owner="replica-2", epoch=1)
        world.journal.jobs[job_id] = taken  # another replica adopted the job
        world.service.set_state("job-1", "RUNNING")  # the next poll journals a change
        await wait_for(lambda: not sup.statistics()["live_jobs"])
        polls = world.service.calls["get"]
        await trio.sleep(100)
        assert sup.statistics()["fenced"] == 1
    assert world.service.calls["get"] == polls
    assert world.service.calls["delete"] == 0
    assert world.journal.jobs[job_id] == taken
