"""The retry delays of an actor: ``Backoff`` values (immutable: each retry loop keeps its own)."""

from __future__ import annotations

import random

import pytest

from supervisor.actor import BACKOFF_MAX, NO_FAILURES, Backoff


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


class Throttled(Exception):
    retry_after = 42.0


def test_no_failures_waits_one_interval() -> None:
    assert NO_FAILURES.delay(10.0, _Fixed(0.9)) == 10.0


def test_each_failure_doubles_the_delay_up_to_the_cap() -> None:
    backoff = NO_FAILURES
    delays = []
    for _ in range(12):
        backoff = backoff.failed(RuntimeError("down"))
        delays.append(backoff.delay(1.0, _Fixed(0.0)))
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == BACKOFF_MAX
    assert backoff.delay(1.0, _Fixed(0.0), cap=5.0) == 5.0


def test_jitter_takes_up_to_half_off() -> None:
    backoff = NO_FAILURES.failed(RuntimeError())
    assert backoff.delay(10.0, _Fixed(1.0)) == pytest.approx(10.0)
    assert backoff.delay(10.0, _Fixed(0.5)) == pytest.approx(15.0)


def test_the_services_retry_after_is_a_floor() -> None:
    backoff = NO_FAILURES.failed(Throttled("429"))
    assert backoff.delay(1.0, _Fixed(0.0)) == 42.0
    assert backoff.failed(RuntimeError()).retry_after == 0.0


def test_a_failure_makes_a_new_value() -> None:
    first = NO_FAILURES.failed(RuntimeError())
    assert Backoff() == NO_FAILURES
    assert first == Backoff(1, 0.0)
    with pytest.raises(AttributeError):
        first.failures = 5  # type: ignore[misc]
