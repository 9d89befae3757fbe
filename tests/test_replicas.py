"""Replicas on real processes: several ``serve`` processes on one PostgreSQL journal.

The client is the official grpcio one, round-robin over the replicas; the external service
is the replica-test connector, which writes every create, poll and cancel (with the pid of
the process that made it) to one file. From that file each test checks what the issue
promises (issue 12): after kill -9, SIGSTOP, rolling restarts and a PostgreSQL outage, no
external create or cancel is duplicated, no job is lost (every job whose CreateTask
answered reaches a final phase, seen through GetTask, once its external job ends), every
orphaned job is polled again by a survivor within the bound, and once the bound has passed
no job is polled by two processes.

Select them with ``-m replicas``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flyteidl2.core import execution_pb2

from tests.support.postgres import PostgresServer
from tests.support.replicas import (
    CallLog,
    Job,
    Lease,
    Replica,
    ReplicaSet,
    RoundRobinClient,
    RpcFailed,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.replicas]

Phase = execution_pb2.TaskExecution
#: Short leases keep the tests fast: a dead replica's jobs move within a few seconds.
FAST = Lease(heartbeat_interval=0.5, dead_after=2.5, poll_interval=1.0)
#: For tests where no replica should ever be judged dead, on a machine others share too.
CALM = Lease(heartbeat_interval=1.0, dead_after=6.0, poll_interval=1.0)
#: Seconds every job's external end may take to show as a final phase through GetTask.
FINAL_TIMEOUT = 60.0
#: The log of a replica that stopped its actors for want of a heartbeat, or whose write
#: was fenced out.
FENCED = re.compile(r"self-fenc|fenced|stopp\w* (its |all |\d+ )?(actors|jobs)", re.IGNORECASE)


@pytest.fixture
def make_replicas(
    postgres_database_url: str, tmp_path: Path
) -> Iterator[Callable[[Lease], ReplicaSet]]:
    """Make a replica set on the test's own database; all its processes die at teardown."""
    made: list[ReplicaSet] = []

    def make(lease: Lease) -> ReplicaSet:
        replicas = ReplicaSet(postgres_database_url, tmp_path / f"set-{len(made)}", lease)
        made.append(replicas)
        return replicas

    yield make
    for replicas in made:
        replicas.close()


# What every test checks at the end ------------------------------------------------------


def owned_by(log: CallLog, replica: Replica, jobs: Sequence[Job]) -> list[str]:
    """The external ids of ``jobs`` that ``replica`` polled last (the jobs it owns)."""
    last = log.refresh().last_poller()
    return [job.external_id for job in jobs if last.get(job.external_id) == replica.pid]


def wait_all_polled(
    replicas: ReplicaSet, jobs: Sequence[Job], after: float = 0.0, timeout: float = 60.0
) -> None:
    log = replicas.calls()
    ids = [job.external_id for job in jobs]
    wait_until(
        f"all {len(ids)} jobs polled",
        lambda: log.refresh().polled(ids, after),
        timeout=timeout,
    )


def assert_single_pollers(replicas: ReplicaSet, jobs: Sequence[Job], since: float) -> None:
    """From ``since`` on, until every job was polled again (at least a poll interval later),
    each job was polled by exactly one process."""
    log = replicas.calls()
    ids = [job.external_id for job in jobs]
    later = since + replicas.lease.poll_interval
    wait_until(
        "every job polled once more",
        lambda: time.monotonic() > later and log.refresh().polled(ids, later),
        timeout=30.0,
    )
    pollers = log.pollers(since)
    doubles = {job: sorted(pids) for job in ids if len(pids := pollers.get(job, set())) > 1}
    assert not doubles, (
        f"{len(doubles)} job(s) polled by two processes after the bound, e.g. "
        f"{dict(list(doubles.items())[:5])}; pids: {replicas.by_pid()}"
    )


def assert_exactly_once(
    replicas: ReplicaSet,
    client: RoundRobinClient,
    jobs: Sequence[Job],
    deleted: Sequence[Job] = (),
) -> None:
    """End every external job; then nothing is lost, nothing created or cancelled twice."""
    replicas.finish(jobs)
    lost = client.wait_final(jobs, timeout=FINAL_TIMEOUT)
    assert not lost, (
        f"{len(lost)} job(s) lost (never final through GetTask), e.g. "
        f"{[job.external_id for job in lost[:5]]}\n{replicas.logs()}"
    )
    log = replicas.calls().refresh()
    missing = [job.external_id for job in jobs if log.creates[job.external_id] == 0]
    assert not missing, f"CreateTask answered but no external create: {missing[:5]}"
    assert not log.duplicated_creates(), f"external creates duplicated: {log.duplicated_creates()}"
    assert not log.duplicated_cancels(), f"external cancels duplicated: {log.duplicated_cancels()}"
    deleted_ids = {job.external_id for job in deleted}
    uncalled = [job for job in deleted_ids if log.cancels[job] != 1]
    assert not uncalled, f"deleted job(s) without an external cancel: {uncalled[:5]}"
    stray = [job.external_id for job in jobs if job.external_id not in deleted_ids]
    assert not [job for job in stray if log.cancels[job]], "a job nobody deleted was cancelled"
    phases = client.phases(jobs)
    wrong = {
        job: Phase.Phase.Name(phase)
        for job, phase in phases.items()
        if phase != (Phase.ABORTED if job in deleted_ids else Phase.SUCCEEDED)
    }
    assert not wrong, f"jobs ended in the wrong phase: {dict(list(wrong.items())[:5])}"


def takeover_times(log: CallLog, ids: Sequence[str], since: float, pids: set[int]) -> list[float]:
    first = log.first_poll(since, pids)
    return sorted(first[job].at - since for job in ids)


# (a) kill -9 -------------------------------------------------------------------------------


def test_kill_9_survivors_poll_every_orphan_within_the_bound(
    make_replicas: Callable[[Lease], ReplicaSet],
) -> None:
    replicas = make_replicas(FAST)
    replicas.start(3)
    with RoundRobinClient(replicas) as client:
        jobs = client.create_jobs(300)
        wait_all_polled(replicas, jobs)
        victim = replicas[0]
        log = replicas.calls()
        orphans = owned_by(log, victim, jobs)
        assert len(orphans) >= 50, f"the victim owns {len(orphans)} of 300 jobs"

        killed_at = time.monotonic()
        victim.kill()
        survivors = {r.pid for r in replicas.live}
        bound = FAST.takeover_bound
        wait_until(
            f"{len(orphans)} orphans polled by a survivor",
            lambda: log.refresh().polled(orphans, killed_at, survivors),
            timeout=bound + 30.0,
        )
        times = takeover_times(log, orphans, killed_at, survivors)
        assert times[-1] <= bound, (
            f"orphans polled again after {times[-1]:.1f}s (p50 {times[len(times) // 2]:.1f}s), "
            f"beyond the bound of {bound:.1f}s\n{replicas.logs()}"
        )
        assert_single_pollers(replicas, jobs, since=killed_at + times[-1] + 0.1)
        assert_exactly_once(replicas, client, jobs)


# (b) SIGSTOP past dead-after, then SIGCONT ---------------------------------------------------


def test_sigstop_past_dead_after_fences_the_stopped_replica(
    make_replicas: Callable[[Lease], ReplicaSet],
) -> None:
    replicas = make_replicas(FAST)
    replicas.start(3)
    with RoundRobinClient(replicas) as client:
        jobs = client.create_jobs(150)
        wait_all_polled(replicas, jobs)
        victim = replicas[0]
        log = replicas.calls()
        orphans = owned_by(log, victim, jobs)
        assert len(orphans) >= 20, f"the victim owns {len(orphans)} of 150 jobs"

        stopped_at = victim.pause()
        survivors = {r.pid for r in replicas.live}
        wait_until(
            "the stopped replica's jobs polled by a survivor",
            lambda: log.refresh().polled(orphans, stopped_at, survivors),
            timeout=FAST.takeover_bound + 30.0,
        )
        # While it sleeps, some of its former jobs are deleted through the survivors: the
        # new owners cancel them, once; the stopped replica must not cancel them again.
        by_id = {job.external_id: job for job in jobs}
        deleted = [by_id[job] for job in orphans[:10]]
        for job in deleted:
            client.delete(job)
        wait_until(
            "the deleted jobs cancelled",
            lambda: all(log.refresh().cancels[job.external_id] for job in deleted),
            timeout=30.0,
        )

        resumed_at = victim.resume()
        wait_until(
            "the resumed replica to log that it stopped its actors or was fenced",
            lambda: FENCED.search(victim.log()) is not None,
            timeout=15.0,
        )
        fenced = victim.metric("supervisor_self_fenced_total") + victim.metric(
            "supervisor_fenced_writes_total"
        )
        assert fenced >= 1, f"no self-fencing or fenced write counted\n{victim.log()[-3000:]}"
        # Once it has noticed (its own clock has jumped past dead_after), it stops at once;
        # a poll already due as it woke may still go out in that first moment.
        settle = resumed_at + FAST.heartbeat_interval + 1.0
        wait_until("the bound after SIGCONT", lambda: time.monotonic() > settle, timeout=10.0)
        stale = [p for p in log.refresh().polls_between(resumed_at, settle) if p.pid == victim.pid]
        assert_single_pollers(replicas, jobs, since=settle)
        late = [p for p in log.refresh().polls_between(settle) if p.pid == victim.pid]
        assert not late, (
            f"the fenced replica kept polling: {len(late)} polls after the bound "
            f"({len(stale)} stale polls before it)\n{victim.log()[-3000:]}"
        )
        assert victim.running, "the fenced replica exited instead of registering again"
        assert_exactly_once(replicas, client, jobs, deleted=deleted)


# (c) rolling restart -------------------------------------------------------------------------

#: Dead-after far longer than a restart: a takeover within it came from the release.
ROLLING = Lease(heartbeat_interval=1.0, dead_after=20.0, poll_interval=2.0)


def wait_taken_over(
    log: CallLog, ids: Sequence[str], since: float, pids: set[int], timeout: float
) -> list[float]:
    """Wait until every one of ``ids`` was polled by one of ``pids`` after ``since``; how
    long after ``since`` each was, sorted."""
    wait_until(
        f"{len(ids)} jobs polled by another replica",
        lambda: log.refresh().polled(ids, since, pids),
        timeout=timeout,
    )
    return takeover_times(log, ids, since, pids)


class GetTaskLoad:
    """GetTasks on random jobs, round-robin, from a thread, while the test does its worst;
    collects every call that failed even after the client's retries."""

    def __init__(self, client: RoundRobinClient, jobs: Sequence[Job]) -> None:
        self.client = client
        self.jobs = list(jobs)
        self.calls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(12)
        while not self._stop.is_set():
            try:
                self.client.get(rng.choice(self.jobs))
            except RpcFailed as exc:
                self.failures.append(str(exc))
            self.calls += 1
            self._stop.wait(0.02)

    def __enter__(self) -> GetTaskLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)


def test_rolling_restart_of_all_replicas_loses_nothing(
    make_replicas: Callable[[Lease], ReplicaSet],
) -> None:
    replicas = make_replicas(ROLLING)
    originals = replicas.start(3)
    with RoundRobinClient(replicas) as client:
        jobs = client.create_jobs(1000)
        wait_all_polled(replicas, jobs, timeout=90.0)
        log = replicas.calls()
        takeovers: list[float] = []
        with GetTaskLoad(client, jobs) as load:
            for old in originals:
                owned = owned_by(log, old, jobs)
                stopping_at = time.monotonic()
                assert old.stop(timeout=30.0) == 0, f"SIGTERM exit\n{old.log()[-3000:]}"
                replicas.spawn()
                others = {r.pid for r in replicas.live}
                takeovers += wait_taken_over(log, owned, stopping_at, others, ROLLING.dead_after)
        assert not load.failures, (
            f"{len(load.failures)} of {load.calls} GetTasks failed during the rolling restart, "
            f"e.g. {load.failures[:3]}"
        )
        assert max(takeovers) < ROLLING.dead_after / 2, (
            f"released jobs waited {max(takeovers):.1f}s for a new owner"
        )
        assert_single_pollers(replicas, jobs, since=time.monotonic())
        assert_exactly_once(replicas, client, jobs)


# (d) PostgreSQL restarted under load -----------------------------------------------------------

#: The outage the issue asks for.
OUTAGE = 10.0


def test_postgres_outage_loses_nothing_and_replicas_recover(
    make_replicas: Callable[[Lease], ReplicaSet], postgres_server: PostgresServer
) -> None:
    replicas = make_replicas(FAST)
    started = replicas.start(3)
    with RoundRobinClient(replicas) as client:
        jobs = client.create_jobs(150)
        wait_all_polled(replicas, jobs)
        postgres_server.pause()
        try:
            time.sleep(OUTAGE)  # the outage itself, not a wait for something to happen
        finally:
            postgres_server.resume()
        back_at = time.monotonic()
        wait_all_polled(replicas, jobs, after=back_at, timeout=60.0)
        recovered = time.monotonic() - back_at
        assert all(r.running for r in started), f"a replica exited\n{replicas.logs()}"
        assert_single_pollers(replicas, jobs, since=time.monotonic())
        more = client.create_jobs(30)  # and they take new work
        assert recovered < 30.0, f"every job polled again only {recovered:.1f}s after"
        assert_exactly_once(replicas, client, [*jobs, *more])


# (e), (f): requests on any replica ----------------------------------------------------------


def test_concurrent_deletes_on_every_replica_cancel_once(
    make_replicas: Callable[[Lease], ReplicaSet],
) -> None:
    replicas = make_replicas(CALM)
    first, *_ = replicas.start(3)
    with RoundRobinClient(replicas) as client:
        jobs = [client.create(on=first) for _ in range(3)]
        others = client.create_jobs(6)
        wait_all_polled(replicas, [*jobs, *others])
        with ThreadPoolExecutor(100) as pool:
            for job in jobs:
                list(pool.map(client.delete, [job] * 100))
        assert not client.wait_final(jobs, timeout=30.0), "deleted jobs never ended"
        log = replicas.calls().refresh()
        cancels = {job.external_id: log.cancellers[job.external_id] for job in jobs}
        assert all(len(pids) == 1 for pids in cancels.values()), f"cancels: {cancels}"
        assert_exactly_once(replicas, client, [*jobs, *others], deleted=jobs)


def test_get_task_on_a_non_owner_makes_no_external_call(
    make_replicas: Callable[[Lease], ReplicaSet],
) -> None:
    replicas = make_replicas(CALM)
    owner, *non_owners = replicas.start(3)
    with RoundRobinClient(replicas) as client:
        job = client.create(on=owner)
        wait_all_polled(replicas, [job])
        log = replicas.calls()
        burst_at = time.monotonic()
        for replica in non_owners * 25:
            resource = client.get(job, on=replica)
            assert resource.phase == Phase.RUNNING, Phase.Phase.Name(resource.phase)
        burst = time.monotonic() - burst_at
        polls = [p for p in log.refresh().polls if p.job == job.external_id]
        assert {p.pid for p in polls} == {owner.pid}, f"pollers {polls}; owner {owner}"
        during = [p for p in polls if p.at >= burst_at]
        assert len(during) <= burst / CALM.poll_interval + 2, (
            f"{len(during)} polls in {burst:.1f}s of GetTasks"
        )
        replicas.finish([job])
        wait_until(
            "a non-owner to answer SUCCEEDED from the journal",
            lambda: client.get(job, on=non_owners[0]).phase == Phase.SUCCEEDED,
            timeout=30.0,
        )
        polls = [p for p in log.refresh().polls if p.job == job.external_id]
        assert {p.pid for p in polls} == {owner.pid}, f"pollers {polls}; owner {owner}"
