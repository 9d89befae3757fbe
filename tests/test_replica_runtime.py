"""Replicas in one process: several Supervisors, each with its own Journal and Replica, on
one real PostgreSQL database, sharing one in-memory external service.

Real clock, short lease settings, and polling with a deadline: what the leases promise
(takeover, release, delete intents for the owner, self-fencing) without process start-up
costs. The multi-process tests (kill -9, SIGSTOP) are in ``test_replicas.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from connectors import ConnectorRegistry, Phase, Resource
from connectors.testing import FakeConnector, FakeMeta, FakeService
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import Identifier, TaskExecutionIdentifier, TaskTemplate
from supervisor import Supervisor
from supervisor.journal import Journal, JournalError
from supervisor.service import LeaseRules, Replica
from supervisor.wire import payload_of

KEY = b"a test key of thirty-two bytes!!"
CATEGORY = pb.TaskCategory(name="fake", version=0)
RULES = LeaseRules(heartbeat_interval=0.2, dead_after=1.0)
DEADLINE = 20.0  # seconds any one expected state may take


@dataclass
class Calls:
    """Every external call, as (replica name, operation, external job id)."""

    log: list[tuple[str, str, str]] = field(default_factory=list)

    def of(self, operation: str, job: str | None = None) -> list[str]:
        return [who for who, op, ext in self.log if op == operation and job in (None, ext)]


class CountingConnector(FakeConnector):
    def __init__(self, service: FakeService, who: str, calls: Calls) -> None:
        super().__init__(service, poll_interval=0.1)
        self.who, self.calls = who, calls

    async def create(self, *args: Any, **kwargs: Any) -> FakeMeta:
        self.calls.log.append((self.who, "create", str(kwargs.get("idempotency_key"))))
        return await super().create(*args, **kwargs)

    async def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:
        self.calls.log.append((self.who, "get", resource_meta.job_id))
        return await super().get(resource_meta, **kwargs)

    async def delete(self, resource_meta: FakeMeta, **kwargs: Any) -> None:
        self.calls.log.append((self.who, "delete", resource_meta.job_id))
        await super().delete(resource_meta, **kwargs)


@dataclass
class Node:
    name: str
    supervisor: Supervisor
    replica: Replica
    journal: Journal


@asynccontextmanager
async def node(
    url: str, name: str, service: FakeService, calls: Calls, *, release: bool = True
) -> AsyncIterator[Node]:
    """One replica; ``release=False`` leaves like a crash (its jobs stay its own)."""
    async with Journal.open(url) as journal:
        replica = Replica(journal.replicas, RULES, adopt_batch=7)
        if not release:

            async def no_release() -> None:
                return None

            replica.release = no_release  # type: ignore[method-assign]
        registry = ConnectorRegistry([CountingConnector(service, name, calls)])
        supervisor = Supervisor(registry, journal, meta_key=KEY, replica=replica)
        async with supervisor.running():
            yield Node(name, supervisor, replica, journal)


def create_request(name: str) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        template=TaskTemplate(type="fake"),
        output_prefix="s3://bucket/out",
        task_execution_metadata=pb.TaskExecutionMetadata(
            task_execution_id=TaskExecutionIdentifier(
                task_id=Identifier(project="p", domain="d", name=name)
            )
        ),
    )


def external_id(meta: bytes) -> str:
    return FakeMeta.decode(payload_of(meta)).job_id


async def phase_of(sup: Supervisor, meta: bytes) -> int:
    answer = await sup.get_task(pb.GetTaskRequest(resource_meta=meta, task_category=CATEGORY))
    assert answer.resource is not None
    return int(answer.resource.phase)


async def eventually(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    with trio.move_on_after(DEADLINE):
        while True:
            if await check():
                return
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def owners(url: str) -> dict[str | None, int]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT owner, count(*) FROM jobs GROUP BY owner"))
            return {owner: int(n) for owner, n in rows}
    finally:
        engine.dispose()


SUCCEEDED, ABORTED = int(Phase.SUCCEEDED), int(Phase.ABORTED)


pytestmark = pytest.mark.trio


async def test_a_job_created_on_one_replica_is_answered_by_another_without_external_calls(
    postgres_database_url: str,
) -> None:
    service, calls = FakeService(), Calls()
    async with (
        node(postgres_database_url, "a", service, calls) as a,
        node(postgres_database_url, "b", service, calls) as b,
    ):
        meta = (await a.supervisor.create_task(create_request("t1"))).resource_meta
        job = external_id(meta)
        await eventually("a's first poll", lambda: _true(bool(calls.of("get", job))))
        service.set_state(job, "DONE")
        await eventually("SUCCEEDED from b", lambda: _is(phase_of(b.supervisor, meta), SUCCEEDED))
        assert set(calls.of("get")) == {"a"}
        assert owners(postgres_database_url) == {a.replica.id: 1}


async def test_a_delete_on_a_non_owner_is_one_cancel_by_the_owner(
    postgres_database_url: str,
) -> None:
    service, calls = FakeService(), Calls()
    async with (
        node(postgres_database_url, "a", service, calls) as a,
        node(postgres_database_url, "b", service, calls) as b,
        node(postgres_database_url, "c", service, calls) as c,
    ):
        meta = (await a.supervisor.create_task(create_request("t1"))).resource_meta
        job = external_id(meta)
        service.set_state(job, "RUNNING")
        request = pb.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY)
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon((a, b, c)[i % 3].supervisor.delete_task, request)
        await eventually("ABORTED", lambda: _is(phase_of(b.supervisor, meta), ABORTED))
        assert calls.of("delete") == ["a"]
        assert service.jobs[job].cancels == 1


async def test_a_crashed_replicas_jobs_are_taken_over_after_the_dead_interval(
    postgres_database_url: str,
) -> None:
    service, calls = FakeService(), Calls()
    async with node(postgres_database_url, "b", service, calls) as b:
        async with node(postgres_database_url, "a", service, calls, release=False) as a:
            metas = [
                (await a.supervisor.create_task(create_request(f"t{i}"))).resource_meta
                for i in range(20)
            ]
            dead_id = a.replica.id
        crashed_at = trio.current_time()
        assert owners(postgres_database_url) == {dead_id: 20}
        await eventually(
            "b to own every job", lambda: _true(owners(postgres_database_url) == {b.replica.id: 20})
        )
        assert trio.current_time() - crashed_at >= RULES.dead_after * 0.5
        for meta in metas:
            service.set_state(external_id(meta), "DONE")
        for meta in metas:
            await eventually("SUCCEEDED", _phase_is(b.supervisor, meta, SUCCEEDED))
        assert b.replica.takeovers == 20


async def test_a_create_retried_while_a_takeover_adopts_the_job_gets_one_actor(
    postgres_database_url: str,
) -> None:
    """The CreateTask of a job left pending by a crashed replica, retried on a survivor
    whose takeover adopts the job while the retry's claim is in flight: one actor, one
    external create (``take`` runs without the job's lock)."""
    url, service, calls = postgres_database_url, FakeService(), Calls()
    async with node(url, "b", service, calls) as b:
        async with node(url, "a", service, calls, release=False) as a:
            service.hang_next("create")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.supervisor.create_task, create_request("t1"))
                await eventually("a's create", lambda: _true(bool(calls.of("create"))))
                nursery.cancel_scope.cancel()
        service.latency = 0.3  # b's create is still in flight when the retry claims the job
        real_claim = b.replica.journal.claim

        async def claim_after_the_takeover(replica: str, job_id: str, dead_after: float) -> Any:
            mine = {b.replica.id: 1}
            await eventually("b's takeover", lambda: _true(owners(url) == mine))
            await eventually("its actor", lambda: _true(calls.of("create") == ["a", "b"]))
            return await real_claim(replica, job_id, dead_after)

        b.replica.journal.claim = claim_after_the_takeover  # type: ignore[method-assign]
        meta = (await b.supervisor.create_task(create_request("t1"))).resource_meta
        job = external_id(meta)
        await eventually("b's polls", lambda: _true(len(calls.of("get", job)) >= 5))
        assert calls.of("create") == ["a", "b"]
        assert len(service.jobs) == 1


async def test_a_released_replicas_jobs_are_taken_over_at_once(
    postgres_database_url: str,
) -> None:
    service, calls = FakeService(), Calls()
    async with node(postgres_database_url, "b", service, calls) as b:
        async with node(postgres_database_url, "a", service, calls) as a:
            for i in range(10):
                await a.supervisor.create_task(create_request(f"t{i}"))
        released_at = trio.current_time()
        await eventually(
            "b to own every job", lambda: _true(owners(postgres_database_url) == {b.replica.id: 10})
        )
        # a notification, not the dead-interval, woke the takeover
        assert trio.current_time() - released_at < RULES.dead_after


async def test_a_replica_whose_heartbeats_fail_stops_acting_and_drops_the_jobs_taken_over(
    postgres_database_url: str,
) -> None:
    service, calls = FakeService(), Calls()
    async with node(postgres_database_url, "a", service, calls) as a:
        meta = (await a.supervisor.create_task(create_request("t1"))).resource_meta
        job = external_id(meta)
        service.set_state(job, "RUNNING")
        healthy = a.replica.journal.heartbeat

        async def failing(replica: str) -> bool:
            raise JournalError("injected: the journal is out of reach")

        a.replica.journal.heartbeat = failing  # type: ignore[method-assign]
        await eventually("a to fence itself", lambda: _true(a.replica.suspended))
        assert a.supervisor.journal_fault() is not None  # health: NOT_SERVING
        fenced_at = len(calls.log)
        async with node(postgres_database_url, "b", service, calls) as b:
            await eventually(
                "b to take the job over",
                lambda: _true(owners(postgres_database_url) == {b.replica.id: 1}),
            )
            assert "a" not in {who for who, *_ in calls.log[fenced_at:]}
            a.replica.journal.heartbeat = healthy  # type: ignore[method-assign]
            await eventually("a to carry on", lambda: _true(not a.replica.suspended))
            assert a.supervisor.statistics()["live_jobs"] == 0
            service.set_state(job, "DONE")
            await eventually("SUCCEEDED", lambda: _is(phase_of(b.supervisor, meta), SUCCEEDED))
            assert ("a", "get", job) not in calls.log[fenced_at:]


def _phase_is(sup: Supervisor, meta: bytes, expected: int) -> Callable[[], Awaitable[bool]]:
    return lambda: _is(phase_of(sup, meta), expected)


async def _true(value: bool) -> bool:
    return value


async def _is(phase: Awaitable[int], expected: int) -> bool:
    return await phase == expected
