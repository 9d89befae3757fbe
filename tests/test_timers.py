"""``supervisor.actor.Timers``: one timer for all of a connector's sleeping actors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from supervisor.actor import Cancel, Inbox, Timers


class _Caller:
    def __init__(self) -> None:
        self.expired_at: float | None = None

    def expire(self) -> None:
        self.expired_at = trio.current_time()


async def test_parked_inboxes_wake_at_their_times_in_order(autojump_clock: Any) -> None:
    timers = Timers()
    woke: list[tuple[str, float]] = []

    async def sleep(name: str, seconds: float) -> None:
        await Inbox().park(timers, trio.current_time() + seconds)
        woke.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        async with trio.open_nursery() as sleepers:
            for name, seconds in (("c", 30.0), ("a", 10.0), ("b", 20.0), ("a2", 10.0)):
                sleepers.start_soon(sleep, name, seconds)
        nursery.cancel_scope.cancel()
    assert [time for _, time in woke] == [10.0, 10.0, 20.0, 30.0]
    assert {name for name, _ in woke[:2]} == {"a", "a2"}
    assert [n for n, _ in woke[2:]] == ["b", "c"]


async def test_an_earlier_time_wakes_the_timer_to_sleep_less(autojump_clock: Any) -> None:
    timers = Timers()
    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        nursery.start_soon(Inbox().park, timers, 1000.0)
        await trio.testing.wait_all_tasks_blocked()  # the timer sleeps until 1000
        await Inbox().park(timers, trio.current_time() + 5)
        assert trio.current_time() == pytest.approx(5)
        nursery.cancel_scope.cancel()


async def test_a_message_ends_a_sleep_early_and_its_timer_goes_stale(autojump_clock: Any) -> None:
    timers, inbox = Timers(), Inbox()
    async with trio.open_nursery() as nursery:
        timers.start(nursery)

        async def deliver() -> None:
            await trio.sleep(3)
            inbox.put(Cancel({}))

        nursery.start_soon(deliver)
        await inbox.park(timers, 10.0)
        assert trio.current_time() == pytest.approx(3)
        inbox.take()
        # The next sleep is not ended by the first one's timer, at 10.
        await inbox.park(timers, 20.0)
        assert trio.current_time() == pytest.approx(20)
        nursery.cancel_scope.cancel()


async def test_a_cancelled_sleep_leaves_a_harmless_timer(autojump_clock: Any) -> None:
    timers, inbox = Timers(), Inbox()
    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        with trio.move_on_after(2):
            await inbox.park(timers, 10.0)
        assert len(timers) == 1
        await trio.sleep(20)  # its time passes: nothing to wake
        assert len(timers) == 0
        nursery.cancel_scope.cancel()


async def test_a_call_expires_at_its_deadline_unless_it_ends_first(autojump_clock: Any) -> None:
    timers = Timers()
    slow, quick = _Caller(), _Caller()
    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        await trio.testing.wait_all_tasks_blocked()  # the timer sleeps with nothing due
        timers.begin_call(quick, trio.current_time() + 5)
        timers.begin_call(slow, trio.current_time() + 6)
        await trio.sleep(4)
        timers.end_call(quick)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert quick.expired_at is None
    assert slow.expired_at == pytest.approx(6)


async def test_start_starts_one_runner_and_again_after_it_stopped(autojump_clock: Any) -> None:
    timers = Timers()
    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        timers.start(nursery)
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 1
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        await Inbox().park(timers, trio.current_time() + 1)  # woken by the new runner
        nursery.cancel_scope.cancel()


async def test_the_timer_wakes_at_most_once_a_quantum(autojump_clock: Any) -> None:
    timers = Timers(quantum=1.0)
    woke: list[float] = []

    async def sleep(seconds: float) -> None:
        await Inbox().park(timers, trio.current_time() + seconds)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        await trio.testing.wait_all_tasks_blocked()  # one pass at 0: the next no sooner than 1
        async with trio.open_nursery() as sleepers:
            for seconds in (0.25, 0.5, 1.5, 1.75, 5.0):
                sleepers.start_soon(sleep, seconds)
        nursery.cancel_scope.cancel()
    # Never early; a time within a quantum of the last pass waits for the next one.
    assert woke == [1.0, 1.0, 2.0, 2.0, 5.0]


async def test_many_sleepers_due_at_once_all_wake_on_time(autojump_clock: Any) -> None:
    timers = Timers()
    woke: list[float] = []

    async def sleep() -> None:
        await Inbox().park(timers, 1.0)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        async with trio.open_nursery() as sleepers:
            for _ in range(100):  # more than one scheduler pass wakes
                sleepers.start_soon(sleep)
        nursery.cancel_scope.cancel()
    assert woke == [1.0] * 100
