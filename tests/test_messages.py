"""The actor's inbox: what wakes it, and what happens once it is closed."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from supervisor.actor import Cancel, Credentials, Inbox, Timers


def test_messages_come_out_in_order() -> None:
    inbox = Inbox()
    first, second = Credentials({"token": "a"}), Cancel({})
    inbox.put(first)
    inbox.put(second)
    assert inbox.take() is first
    assert inbox.take() is second
    assert inbox.take() is None


async def test_a_message_wakes_the_parked_actor() -> None:
    inbox = Inbox()
    async with trio.open_nursery() as nursery:
        woke = trio.Event()

        async def sleeper() -> None:
            await inbox.park()
            woke.set()

        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        inbox.put(Credentials({}))
        await woke.wait()


async def test_credentials_do_not_cut_a_call_short_but_a_cancel_does() -> None:
    inbox = Inbox()
    scope = trio.CancelScope()
    inbox.arm(scope)
    inbox.put(Credentials({"token": "a"}))
    assert not scope.cancel_called
    inbox.put(Cancel({}))
    assert scope.cancel_called


async def test_a_disarmed_scope_is_left_alone() -> None:
    inbox = Inbox()
    scope = trio.CancelScope()
    inbox.arm(scope)
    inbox.disarm()
    inbox.put(Cancel({}))
    assert not scope.cancel_called


async def test_a_message_already_waiting_ends_a_park_or_arms_at_once() -> None:
    inbox = Inbox()
    inbox.put(Credentials({}))
    with trio.fail_after(1):
        await inbox.park()  # returns: a message waits
    scope = trio.CancelScope()
    inbox.arm(scope)
    assert not scope.cancel_called  # credentials do not end a call
    inbox.put(Cancel({}))
    other = trio.CancelScope()
    inbox.arm(other)
    assert other.cancel_called


async def test_a_park_without_a_cancel_waiting_ignores_credentials(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox, timers = Inbox(), Timers()
    inbox.put(Credentials({}))
    async with trio.open_nursery() as nursery:
        timers.start(nursery)
        await inbox.park(timers, trio.current_time() + 5, on_credentials=False)
        assert trio.current_time() == pytest.approx(5)
        nursery.cancel_scope.cancel()


def test_a_closed_inbox_refuses_messages_and_hands_back_the_rest() -> None:
    inbox = Inbox()
    left = Cancel({})
    inbox.put(left)
    assert inbox.close() == [left]
    with pytest.raises(trio.ClosedResourceError):
        inbox.put(Cancel({}))
    assert inbox.take() is None
