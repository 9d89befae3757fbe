"""``supervisor.cli.freeze_survivors``: what survives a full collection is frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from supervisor.cli import freeze_survivors


@pytest.fixture
def frozen_state() -> Iterator[None]:
    callbacks = list(gc.callbacks)
    yield
    gc.callbacks[:] = callbacks
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_survivors_of_a_full_collection_are_frozen_and_garbage_is_not(frozen_state: None) -> None:
    before = len(gc.callbacks)
    freeze_survivors()
    freeze_survivors()  # idempotent: one callback
    assert len(gc.callbacks) == before + 1
    frozen = gc.get_freeze_count()
    kept = [[index] for index in range(1000)]
    _Node()  # garbage, made after the first freeze
    assert gc.collect() >= 1  # the cycle is found, not frozen
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert gc.get_count()[0] < 100  # nothing left young


def test_a_younger_collection_freezes_nothing(frozen_state: None) -> None:
    freeze_survivors()
    frozen = gc.get_freeze_count()
    kept = [[index] for index in range(1000)]
    gc.collect(1)
    assert gc.get_freeze_count() == frozen
    assert kept


def test_a_cycle_of_frozen_objects_is_freed_after_the_thaw_interval(frozen_state: None) -> None:
    freeze_survivors()
    node = _Node()
    gc.collect()  # survives: frozen
    del node  # now garbage, but frozen: no collection sees it
    assert gc.collect() == 0
    freeze_survivors(thaw_interval=0.0)  # the interval has passed
    gc.collect()  # this full collection hands the frozen back
    assert gc.get_freeze_count() == 0
    assert gc.collect() >= 1  # the next one walks them and frees the cycle
