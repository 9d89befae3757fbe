"""The actor's inbox: what wakes it, and what happens once it is closed."""

from __future__ import annotations

import pytest
import trio

from supervisor.actor import Cancel, Credentials, Inbox


def test_messages_come_out_in_order() -> None:
    inbox = Inbox()
    first, second = Credentials({"token": "a"}), Cancel({})
    inbox.put(first)
    inbox.put(second)
    assert inbox.take() is first
    assert inbox.take() is second
    assert inbox.take() is None


async def test_a_message_cancels_the_scope_the_actor_waits_in() -> None:
    inbox = Inbox()
    scope = inbox.waking()
    assert not scope.cancel_called
    inbox.put(Credentials({}))
    assert scope.cancel_called


async def test_credentials_do_not_cut_a_poll_short_but_a_cancel_does() -> None:
    inbox = Inbox()
    poll = inbox.waking(on_credentials=False)
    inbox.put(Credentials({"token": "a"}))
    assert not poll.cancel_called
    inbox.put(Cancel({}))
    assert poll.cancel_called


async def test_a_message_already_waiting_cancels_the_scope_at_once() -> None:
    inbox = Inbox()
    inbox.put(Credentials({}))
    assert not inbox.waking(on_credentials=False).cancel_called
    assert inbox.waking().cancel_called
    inbox.put(Cancel({}))
    assert inbox.waking(on_credentials=False).cancel_called


def test_a_closed_inbox_refuses_messages_and_hands_back_the_rest() -> None:
    inbox = Inbox()
    left = Cancel({})
    inbox.put(left)
    assert inbox.close() == [left]
    with pytest.raises(trio.ClosedResourceError):
        inbox.put(Cancel({}))
    assert inbox.take() is None
