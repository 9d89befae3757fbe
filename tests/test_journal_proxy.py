"""``JournalProxy``: every ``JournalLike`` call passes its hook, by name, then the journal."""

from __future__ import annotations

import inspect

import pytest

from supervisor.journal import (
    JOURNAL_WRITES,
    InMemoryJournal,
    JournalCall,
    JournalLike,
    JournalProxy,
    Put,
)
from tests.test_journal import job


class Recording(JournalProxy):
    def __init__(self, inner: InMemoryJournal, refuse: frozenset[str] = frozenset()) -> None:
        super().__init__(inner)
        self.calls: list[str] = []
        self.refuse = refuse

    async def before(self, call: JournalCall) -> None:
        self.calls.append(call)
        if call in self.refuse:
            raise RuntimeError(f"refused {call}")


def protocol_methods() -> set[str]:
    return {
        name
        for name, _ in inspect.getmembers(JournalLike, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


def test_the_calls_named_are_the_protocols_methods() -> None:
    assert {call.value for call in JournalCall} == protocol_methods()
    assert {"write", "write_if_absent"} == JOURNAL_WRITES


async def test_every_call_passes_the_hook_with_its_name_then_reaches_the_journal() -> None:
    memory = InMemoryJournal()
    proxy = Recording(memory)
    journal: JournalLike = proxy
    record = job("a")
    await journal.write(Put(record, "created"))
    assert await journal.write_if_absent(Put(job("b"), "created")) is None
    assert await journal.setting("key", "k1") == "k1"
    assert await journal.get("a") == record
    assert await journal.find_by_meta("echo", 0, b'{"id": "a"}') == record
    assert [r.job_id for r in await journal.unfinished()] == ["a", "b"]
    assert [e.kind for e in await journal.events("a")] == ["created"]
    assert sorted(proxy.calls) == sorted(protocol_methods())
    assert memory.counts.writes == 2


async def test_a_hook_that_raises_refuses_the_call() -> None:
    memory = InMemoryJournal()
    proxy = Recording(memory, refuse=JOURNAL_WRITES)
    with pytest.raises(RuntimeError, match="refused write"):
        await proxy.write(Put(job("a"), "created"))
    with pytest.raises(RuntimeError, match="refused write_if_absent"):
        await proxy.write_if_absent(Put(job("a"), "created"))
    assert await proxy.get("a") is None
    assert memory.counts.writes == 0
