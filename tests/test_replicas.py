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
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import grpc
import pytest
from flyteidl2.core import execution_pb2

from tests.support.postgres import PostgresServer, fresh_database
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
from tests.support.server import ServerExited, ServerTimeout

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
    return [job.external_id for job in jobs if last.get(job.external_id) == replica.who]


def wait_all_polled(
    replicas: ReplicaSet, jobs: Sequence[Job], after: float = 0.0, timeout: float = 60.0
) -> None:
    log = replicas.calls()
    ids = [job.external_id for job in jobs]
    try:
        wait_until(
            f"all {len(ids)} jobs polled", lambda: log.refresh().polled(ids, after), timeout=timeout
        )
    except ServerTimeout:
        raise AssertionError(unpolled(replicas, log, ids, after)) from None


def unpolled(replicas: ReplicaSet, log: CallLog, ids: Sequence[str], after: float) -> str:
    """Which jobs were not polled after ``after``: who polled them last, and when."""
    first = log.first_poll(after)
    missing = [job for job in ids if job not in first]
    last = {poll.job: poll for poll in log.polls}
    who = replicas.by_who()
    sample = [
        f"{job} last polled by {who[p.who].name if p.who in who else p.who} "
        f"{time.monotonic() - p.at:.1f}s ago"
        if (p := last.get(job))
        else f"{job} never polled"
        for job in missing[:8]
    ]
    return (
        f"{len(missing)} of {len(ids)} jobs not polled since {time.monotonic() - after:.1f}s ago: "
        + "; ".join(sample)
        + f"\n{replicas.logs()}"
    )


def assert_single_pollers(replicas: ReplicaSet, jobs: Sequence[Job], since: float) -> None:
    """From ``since`` on, until every job was polled again (at least a poll interval later),
    each job was polled by exactly one process."""
    log = replicas.calls()
    ids = [job.external_id for job in jobs]
    later = since + replicas.lease.poll_interval
    try:
        wait_until(
            "every job polled once more",
            lambda: time.monotonic() > later and log.refresh().polled(ids, later),
            timeout=30.0,
        )
    except ServerTimeout:
        raise AssertionError(unpolled(replicas, log, ids, later)) from None
    pollers = log.pollers(since)
    doubles = {job: sorted(pids) for job in ids if len(pids := pollers.get(job, set())) > 1}
    assert not doubles, (
        f"{len(doubles)} job(s) polled by two processes after the bound, e.g. "
        f"{dict(list(doubles.items())[:5])}; pids: {replicas.by_who()}"
    )
    wanted = set(ids)
    twice = {
        job: found
        for job, found in log.repeated(since, replicas.lease.poll_interval / 2).items()
        if job in wanted
    }
    assert not twice, (
        f"{len(twice)} job(s) polled twice within half a poll interval by one process (two "
        f"actors for one job), e.g. {dict(list(twice.items())[:5])}; pids: {replicas.by_who()}"
    )


def assert_exactly_once(
    replicas: ReplicaSet,
    client: RoundRobinClient,
    jobs: Sequence[Job],
    deleted: Sequence[Job] = (),
    *,
    recreated: frozenset[str] = frozenset(),
) -> None:
    """End every external job; then nothing is lost, nothing created or cancelled twice
    (but the ``recreated`` ones: a create retried with the same idempotency key)."""
    replicas.finish(jobs)
    lost = client.wait_final(jobs, timeout=FINAL_TIMEOUT)
    assert not lost, (
        f"{len(lost)} job(s) lost (never final through GetTask), e.g. "
        f"{[job.external_id for job in lost[:5]]}\n{replicas.logs()}"
    )
    log = replicas.calls().refresh()
    missing = [job.external_id for job in jobs if log.creates[job.external_id] == 0]
    assert not missing, f"CreateTask answered but no external create: {missing[:5]}"
    duplicated = {job: n for job, n in log.duplicated_creates().items() if job not in recreated}
    assert not duplicated, f"external creates duplicated: {duplicated}"
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


def spread(times: Sequence[float]) -> str:
    """p50 and max of sorted ``times``."""
    return f"p50 {times[len(times) // 2]:.2f}s, max {times[-1]:.2f}s"


@pytest.mark.parametrize(("where", "count"), [("this host", 300), ("another host", 150)])
def test_kill_9_survivors_poll_every_orphan_within_the_bound(
    make_replicas: Callable[[Lease], ReplicaSet], where: str, count: int
) -> None:
    """On this host, peers see at once that the victim's process is gone; a replica on
    another host is dead only once its heartbeat is ``dead_after`` old."""
    replicas = make_replicas(FAST)
    replicas.start(3)
    with RoundRobinClient(replicas) as client:
        jobs = client.create_jobs(count)
        wait_all_polled(replicas, jobs)
        victim = replicas[0]
        if where == "another host":
            replicas.move_to_another_host(victim)
        log = replicas.calls()
        orphans = owned_by(log, victim, jobs)
        assert len(orphans) >= count // 6, f"the victim owns {len(orphans)} of {count} jobs"

        killed_at = time.monotonic()
        victim.kill()
        survivors = {r.who for r in replicas.live}
        bound = FAST.takeover_bound
        wait_until(
            f"{len(orphans)} orphans polled by a survivor",
            lambda: log.refresh().polled(orphans, killed_at, survivors),
            timeout=bound + 30.0,
        )
        times = takeover_times(log, orphans, killed_at, survivors)
        print(f"kill -9 ({where}): {len(orphans)} orphans polled again after", spread(times))
        assert times[-1] <= bound, (
            f"orphans polled again after {times[-1]:.1f}s (p50 {times[len(times) // 2]:.1f}s), "
            f"beyond the bound of {bound:.1f}s\n{replicas.logs()}"
        )
        if where == "another host":
            assert times[0] >= FAST.dead_after - FAST.heartbeat_interval, (
                f"orphans of a replica on another host adopted after {times[0]:.2f}s: "
                "before its heartbeat was dead_after old"
            )
        assert_single_pollers(replicas, jobs, since=killed_at + times[-1] + 0.1)
        assert_exactly_once(replicas, client, jobs)


def test_kill_9_during_creates_loses_no_task(
    make_replicas: Callable[[Lease], ReplicaSet],
) -> None:
    """Creates in flight on a replica killed: the client retries them on the others (as
    Propeller retries a failed CreateTask); every task gets its job, and a create the
    victim had started is made again only with the same idempotency key."""
    replicas = make_replicas(FAST)
    victim, *_ = replicas.start(3)
    with RoundRobinClient(replicas) as client, ThreadPoolExecutor(48) as pool:
        deadline = time.monotonic() + 60.0
        client.create_seconds = 0.3  # so that most creates in flight at the kill are pending
        client.retry_unavailable = False
        rng = random.Random(3)

        def create(name: str) -> Job:
            while True:
                try:
                    return client.create(name)
                except RpcFailed as exc:
                    if exc.code != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                        raise
                # Retries spread over a second: some land while a survivor takes over.
                time.sleep(rng.random())

        futures = [pool.submit(create, f"during-kill-{uuid.uuid4().hex[:8]}") for _ in range(300)]
        wait_until(
            "a third of the creates", lambda: sum(f.done() for f in futures) >= 100, timeout=60
        )
        victim.kill()
        jobs = [future.result() for future in futures]
        wait_all_polled(replicas, jobs)
        log = replicas.calls().refresh()
        again = {job: who for job, who in log.creators.items() if len(who) > 1}
        wrong = {job: who for job, who in again.items() if len(who) > 2 or who[0] != victim.who}
        assert not wrong, (
            f"creates repeated, not after the victim's: {wrong}; replicas {replicas.by_who()}\n"
            + "\n".join(f"{job}:\n{replicas.history(job)}" for job in list(wrong)[:3])
            + "\n"
            + "\n".join(
                f"{r.name}: {line}"
                for r in replicas.all
                for line in r.log().splitlines()
                if any(job in line for job in wrong)
            )
        )
        print(f"kill -9 during creates: {len(again)} create(s) retried by the new owner")
        assert_single_pollers(replicas, jobs, since=time.monotonic())
        assert_exactly_once(replicas, client, jobs, recreated=frozenset(again))


# Containers on one host: every replica is pid 1 ---------------------------------------------


def test_replicas_in_containers_on_one_host_keep_their_own_jobs(
    postgres_database_url: str, tmp_path: Path
) -> None:
    """Replicas in PID namespaces of their own (containers, or pods of one Kubernetes node)
    share the host's boot id and are all pid 1: none may take a live peer for dead."""
    if not Path("/proc/self/ns/pid").exists():
        pytest.skip("no PID namespaces here")
    with ReplicaSet(postgres_database_url, tmp_path, FAST, containers=True) as replicas:
        try:
            replicas.start(3)
        except ServerExited as exc:
            if "unshare" in str(exc):
                pytest.skip(f"cannot make PID namespaces here: {exc}")
            raise
        with RoundRobinClient(replicas) as client:
            jobs = client.create_jobs(30)
            wait_all_polled(replicas, jobs)
            # Two heartbeats and takeover rounds later, nobody has taken anybody's jobs.
            assert_single_pollers(replicas, jobs, since=time.monotonic() + FAST.dead_after)
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
        assert len(orphans) >= 30, f"the victim owns {len(orphans)} of 150 jobs"

        by_id = {job.external_id: job for job in jobs}
        stopped_at = victim.pause()
        # Deleted through the survivors while their owner sleeps: the intent is journalled
        # and the owner notified, but only whoever adopts the jobs may cancel them.
        deleted = [by_id[job] for job in orphans[:10]]
        for job in deleted:
            client.delete(job)
        survivors = {r.who for r in replicas.live}
        wait_until(
            "the stopped replica's jobs polled by a survivor",
            lambda: log.refresh().polled(orphans[10:], stopped_at, survivors),
            timeout=FAST.takeover_bound + 30.0,
        )
        # Deleted once they have a new owner: it cancels them, once; the stopped replica
        # must not cancel them (nor the ones above) again when it wakes.
        deleted += [by_id[job] for job in orphans[10:20]]
        for job in deleted[10:]:
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
        # Its own clock jumped past dead_after as it woke: no actor of its may make an
        # external call before it has learnt which of its jobs were taken over meanwhile.
        running = [job for job in jobs if job not in deleted]  # the deleted ones have ended
        assert_single_pollers(replicas, running, since=resumed_at)
        stale = [p for p in log.refresh().polls_between(resumed_at) if p.who == victim.who]
        assert not stale, (
            f"the fenced replica polled {len(stale)} time(s) after SIGCONT, e.g. {stale[:3]}"
            f"\n{victim.log()[-3000:]}"
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
                # As a RollingUpdate with a surge: the new pod starts, the old one is told
                # to stop; the new one is ready after the old one has gone.
                new = replicas.launch()
                stopping_at = time.monotonic()
                assert old.stop(timeout=30.0) == 0, f"SIGTERM exit\n{old.log()[-3000:]}"
                new.wait_serving()
                others = {r.who for r in replicas.live}
                takeovers += wait_taken_over(log, owned, stopping_at, others, ROLLING.dead_after)
        assert not load.failures, (
            f"{len(load.failures)} of {load.calls} GetTasks failed during the rolling restart, "
            f"e.g. {load.failures[:3]}"
        )
        takeovers.sort()
        print(f"rolling restart: released jobs polled again after {spread(takeovers)}")
        assert takeovers[-1] < ROLLING.dead_after / 2, (
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
        print(f"PostgreSQL back: every job polled again within {recovered:.2f}s")
        assert all(r.running for r in started), f"a replica exited\n{replicas.logs()}"
        assert_single_pollers(replicas, jobs, since=time.monotonic())
        more = client.create_jobs(30)  # and they take new work
        assert recovered < 30.0, f"every job polled again only {recovered:.1f}s after"
        assert_exactly_once(replicas, client, [*jobs, *more])


# (e), (f): requests on any replica ----------------------------------------------------------


@pytest.fixture(scope="module")
def calm_replicas(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaSet]:
    """Three replicas that no test disturbs (each test makes jobs of its own)."""
    with (
        fresh_database(postgres_server.port) as url,
        ReplicaSet(url, tmp_path_factory.mktemp("calm"), CALM) as replicas,
    ):
        replicas.start(3)
        yield replicas
        assert all(r.running for r in replicas.all), f"a replica died\n{replicas.logs()}"


def test_one_create_sent_to_every_replica_at_once_creates_once(
    calm_replicas: ReplicaSet,
) -> None:
    replicas = calm_replicas
    with RoundRobinClient(replicas) as client, ThreadPoolExecutor(3 * 20) as pool:
        names = [f"same-{uuid.uuid4().hex[:8]}" for _ in range(20)]
        answers = list(
            pool.map(lambda call: client.create(call[0], on=call[1]), product(names, replicas.all))
        )
        jobs = {job.name: job for job in answers}
        metas = {name: {a.resource_meta for a in answers if a.name == name} for name in names}
        assert all(len(m) == 1 for m in metas.values()), "replicas answered different metas"
        assert_exactly_once(replicas, client, list(jobs.values()))


def test_concurrent_deletes_on_every_replica_cancel_once(calm_replicas: ReplicaSet) -> None:
    replicas = calm_replicas
    first = replicas[0]
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


def test_get_task_on_a_non_owner_makes_no_external_call(calm_replicas: ReplicaSet) -> None:
    replicas = calm_replicas
    owner, *non_owners = replicas.all
    with RoundRobinClient(replicas) as client:
        job = client.create(on=owner)
        wait_all_polled(replicas, [job])
        # The call log shows a poll as it starts; its outcome is journalled a moment later.
        wait_until(
            "a non-owner to answer RUNNING from the journal",
            lambda: client.get(job, on=non_owners[0]).phase == Phase.RUNNING,
            timeout=10.0,
        )
        log = replicas.calls()
        burst_at = time.monotonic()
        for replica in non_owners * 25:
            resource = client.get(job, on=replica)
            assert resource.phase == Phase.RUNNING, Phase.Phase.Name(resource.phase)
        burst = time.monotonic() - burst_at
        polls = [p for p in log.refresh().polls if p.job == job.external_id]
        assert {p.who for p in polls} == {owner.who}, f"pollers {polls}; owner {owner}"
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
        assert {p.who for p in polls} == {owner.who}, f"pollers {polls}; owner {owner}"
