"""Local runs (``connectors.run_local``) on Trio's MockClock against the in-memory FakeService.

Virtual time makes "poll every 3 s for 12 s" instant and the poll count exact.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import trio

from connectors import Phase, run_local
from connectors._local import MAX_POLL_FAILURES
from connectors.testing import FakeConnector, FakeService
from flyteproto.flyteidl2.core import TaskTemplate

TEMPLATE = TaskTemplate(type="fake")


class Terminal(io.StringIO):
    """An output stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def set_state_at(
    service: FakeService, when: float, state: str, outputs: dict[str, Any] | None = None
) -> None:
    await trio.sleep_until(when)
    service.set_state("job-1", state, outputs)


async def test_polls_every_3_seconds_and_prints_progress_links_and_outputs(
    autojump_clock: Any,
) -> None:
    service = FakeService()
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_state_at, service, 1, "RUNNING")
        nursery.start_soon(set_state_at, service, 10, "DONE", {"rows": 3})
        resource = await run_local(FakeConnector(service), TEMPLATE, {"n": 1}, output=out)
    assert resource.phase == Phase.SUCCEEDED
    assert resource.outputs == {"rows": 3}
    assert service.calls["get"] == 5  # at 0, 3, 6, 9 and 12 s
    assert service.jobs["job-1"].inputs == {"n": 1}
    assert out.getvalue().splitlines() == [
        'submitted Fake connector job {"job_id":"job-1"}',
        "log: fake console: https://fake.example/job-1",
        "QUEUED 0s: pending",
        "RUNNING 3s: running",
        "SUCCEEDED 12s: done",
        'outputs: {"rows": 3}',
    ]


async def test_poll_interval_is_honoured(autojump_clock: Any) -> None:
    service = FakeService()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_state_at, service, 10, "DONE")
        await run_local(FakeConnector(service), TEMPLATE, poll_interval=0.5, output=io.StringIO())
    assert service.calls["get"] == 21  # at 0, 0.5, ..., 10 s


async def test_live_status_line_is_redrawn_in_place_on_a_terminal(autojump_clock: Any) -> None:
    service = FakeService()
    out = Terminal()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_state_at, service, 1, "RUNNING")
        nursery.start_soon(set_state_at, service, 5, "DONE")
        await run_local(FakeConnector(service), TEMPLATE, output=out)
    text = out.getvalue()
    assert "\r\x1b[KRUNNING 4s: running" in text  # the elapsed time ticks between polls
    assert text.endswith("\r\x1b[KSUCCEEDED 6s: done\n")
    # New lines only for the submit, the log link and the final state: the rest redraws.
    assert text.count("\n") == 3


async def test_failed_job_is_returned_with_its_message(autojump_clock: Any) -> None:
    service = FakeService()
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_state_at, service, 4, "ERROR")
        resource = await run_local(FakeConnector(service), TEMPLATE, output=out)
    assert resource.phase == Phase.FAILED
    assert out.getvalue().splitlines()[-1] == "FAILED 6s: error"
    assert service.calls["delete"] == 0


async def test_cancellation_cancels_the_external_job_exactly_once(autojump_clock: Any) -> None:
    service = FakeService()
    out = io.StringIO()
    with trio.move_on_after(7) as scope:
        await run_local(FakeConnector(service), TEMPLATE, output=out)
    assert scope.cancelled_caught
    assert service.calls["delete"] == 1
    assert service.jobs["job-1"].cancels == 1
    assert service.jobs["job-1"].state == "CANCELLED"
    assert out.getvalue().splitlines()[-2:] == [
        "interrupted: cancelling the Fake connector job",
        "cancelled the external job",
    ]


async def test_keyboard_interrupt_cancels_the_job_then_propagates(autojump_clock: Any) -> None:
    service = FakeService()
    service.fail_next("get", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        await run_local(FakeConnector(service), TEMPLATE, output=io.StringIO())
    assert service.jobs["job-1"].cancels == 1


async def test_cancel_during_the_submit_cancels_the_job_it_made(autojump_clock: Any) -> None:
    service = FakeService(latency=2.0)
    with trio.move_on_after(1):
        await run_local(FakeConnector(service), TEMPLATE, output=io.StringIO())
    assert service.calls["create"] == 1
    assert service.calls["get"] == 0
    assert service.jobs["job-1"].cancels == 1


async def test_a_cancel_that_hangs_gives_up_after_the_cancel_timeout(autojump_clock: Any) -> None:
    service = FakeService()
    service.hang_next("delete")
    out = io.StringIO()
    with trio.move_on_after(1):
        await run_local(FakeConnector(service), TEMPLATE, output=out, cancel_timeout=30)
    assert trio.current_time() == pytest.approx(31)
    assert out.getvalue().splitlines()[-1] == (
        "cancel did not finish within 30s; the job may still run"
    )


async def test_transient_poll_errors_are_retried(autojump_clock: Any) -> None:
    service = FakeService()
    service.fail_next("get")
    service.fail_next("get")
    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_state_at, service, 1, "DONE")
        resource = await run_local(FakeConnector(service), TEMPLATE, output=out)
    assert resource.phase == Phase.SUCCEEDED
    assert service.calls["get"] == 3
    assert "poll failed (2 in a row): RuntimeError: injected get failure" in out.getvalue()


async def test_gives_up_after_repeated_poll_failures_without_cancelling(
    autojump_clock: Any,
) -> None:
    service = FakeService()
    for _ in range(MAX_POLL_FAILURES):
        service.fail_next("get")
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="injected get failure"):
        await run_local(FakeConnector(service), TEMPLATE, output=out)
    assert service.calls["get"] == MAX_POLL_FAILURES
    assert service.calls["delete"] == 0
    assert out.getvalue().splitlines()[-1].startswith("stopped watching; the job may still run")


async def test_connection_kwargs_reach_every_call_with_a_fresh_idempotency_key(
    autojump_clock: Any,
) -> None:
    service = FakeService()
    connector = FakeConnector(service)
    service.jobs.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_state_at, service, 1, "DONE")
        await run_local(connector, TEMPLATE, output=io.StringIO(), api_token="t")
    create, *gets = connector.seen_kwargs
    assert create["api_token"] == "t"
    assert create["idempotency_key"].startswith("local-")
    assert gets == [{"api_token": "t"}] * 2
