"""Run a connector task without a cluster: submit, poll, show progress, cancel on interrupt.

The equivalent of flyte-sdk's ``AsyncConnectorExecutorMixin``, plus what it leaves as a
TODO: an interrupted run (Ctrl-C, or any Trio cancellation) cancels the external job
before it ends.

    resource = await run_local(connector, template, {"n": 3}, api_token=token)

``python -m supervisor run TEMPLATE_FILE`` is the command-line form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import uuid
from collections.abc import Mapping
from typing import Any, TextIO

import trio

from flyteproto.flyteidl2.core import Literal, TaskTemplate

from ._connector import AsyncConnector
from ._errors import JobNotFound, PermanentError
from ._literals import LiteralConversionError, literal_to_native
from ._phase import Phase, is_terminal
from ._resource import Resource, ResourceMeta

__all__ = [
    "CANCEL_TIMEOUT",
    "MAX_POLL_FAILURES",
    "RUN_LOCAL_POLL_INTERVAL",
    "run_local",
]

#: Seconds between two polls, as flyte-sdk's local executor.
RUN_LOCAL_POLL_INTERVAL = 3.0
#: How long an interrupted run waits for the external job's cancel.
CANCEL_TIMEOUT = 60.0
#: Consecutive failed polls after which a run gives up (the job is left as it is).
MAX_POLL_FAILURES = 5
#: How often a live status line redraws its elapsed time between polls.
_TICK = 1.0
_CLEAR_LINE = "\r\x1b[K"


async def run_local(
    connector: AsyncConnector[Any],
    task_template: TaskTemplate,
    inputs: Mapping[str, Any] | None = None,
    *,
    output_prefix: str = "",
    poll_interval: float = RUN_LOCAL_POLL_INTERVAL,
    output: TextIO | None = None,
    cancel_timeout: float = CANCEL_TIMEOUT,
    **kwargs: Any,
) -> Resource:
    """Create the job, poll it every ``poll_interval`` seconds until it ends, return its state.

    ``inputs`` are native values; ``kwargs`` (secrets, configs) go to every connector call,
    with a fresh ``idempotency_key`` on ``create``. Progress goes to ``output`` (default
    stdout): a status line with phase, elapsed time and message, redrawn in place on a
    terminal and printed as a new line on each change otherwise; log links once each; the
    outputs (as JSON) when the job succeeds. A job that ends otherwise is returned too:
    check ``resource.phase``. A flyte-sdk (asyncio) connector needs a trio-asyncio loop
    around the call (``async with trio_asyncio.open_loop():``; the ``run`` command opens one).

    Cancellation: a cancel (or KeyboardInterrupt) after the submit cancels the external job
    (waiting up to ``cancel_timeout`` seconds), then propagates. A cancel during the submit
    waits for the submit to finish first, so the job it made is cancelled too.
    Errors: what ``create`` raises; PermanentError or JobNotFound from ``get``; the last
    error once ``MAX_POLL_FAILURES`` polls in a row have failed.
    """
    progress = _Progress(output if output is not None else sys.stdout)
    with trio.CancelScope(shield=True), trio.fail_after(connector.call_timeout):
        meta = await connector.create(
            task_template,
            output_prefix,
            inputs=dict(inputs or {}),
            task_execution_metadata=None,
            idempotency_key=f"local-{uuid.uuid4().hex}",
            **kwargs,
        )
    progress.note(f"submitted {connector.name} job {_describe_meta(meta)}")
    try:
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled during the submit?
        resource = await _poll(connector, meta, progress, poll_interval, kwargs)
    except BaseException as exc:
        if _interrupted(exc):
            await _cancel(connector, meta, progress, cancel_timeout, kwargs)
        else:
            progress.note(f"stopped watching; the job may still run: {_describe_meta(meta)}")
        progress.finish()
        raise
    progress.finish()
    if resource.phase == Phase.SUCCEEDED and resource.outputs:
        progress.note("outputs: " + _outputs_json(resource.outputs))
    return resource


async def _poll(
    connector: AsyncConnector[Any],
    meta: ResourceMeta,
    progress: _Progress,
    poll_interval: float,
    kwargs: dict[str, Any],
) -> Resource:
    failures = 0
    while True:
        try:
            resource = await connector.get(meta, **kwargs)
        except (PermanentError, JobNotFound):
            raise
        except Exception as exc:
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise
            progress.note(f"poll failed ({failures} in a row): {type(exc).__name__}: {exc}")
        else:
            if not isinstance(resource, Resource):
                raise TypeError(f"{connector.name} get returned {type(resource).__name__}")
            failures = 0
            progress.update(resource)
            if is_terminal(resource.phase):
                return resource
        await progress.wait(poll_interval)


async def _cancel(
    connector: AsyncConnector[Any],
    meta: ResourceMeta,
    progress: _Progress,
    limit: float,
    kwargs: dict[str, Any],
) -> None:
    progress.note(f"interrupted: cancelling the {connector.name} job")
    with trio.move_on_after(limit, shield=True) as scope:
        try:
            await connector.delete(meta, **kwargs)
        except JobNotFound:
            pass
        except Exception as exc:
            progress.note(f"cancel failed, the job may still run: {type(exc).__name__}: {exc}")
            return
    if scope.cancelled_caught:
        progress.note(f"cancel did not finish within {limit:g}s; the job may still run")
    else:
        progress.note("cancelled the external job")


def _interrupted(exc: BaseException) -> bool:
    interrupt = (trio.Cancelled, KeyboardInterrupt)
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(lambda e: isinstance(e, interrupt)) is not None
    return isinstance(exc, interrupt)


class _Progress:
    """The status line: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = _isatty(stream)
        self.start = trio.current_time()
        self.phase: Phase | None = None
        self.message = ""
        self.links: set[tuple[str, str]] = set()
        self.drawn = False

    def update(self, resource: Resource) -> None:
        for link in resource.log_links:
            if (link.name, link.uri) not in self.links:
                self.links.add((link.name, link.uri))
                self.note(f"log: {link.name}: {link.uri}")
        changed = (resource.phase, resource.message) != (self.phase, self.message)
        self.phase, self.message = resource.phase, resource.message
        if self.live:
            self._draw()
        elif changed:
            self._write(self._status() + "\n")

    async def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, ticking the elapsed time of a live status line."""
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            await trio.sleep(min(left, _TICK) if self.live else left)
            if self.live:
                self._draw()

    def note(self, text: str) -> None:
        """A line of its own, above the status line."""
        if self.drawn:
            self._write(_CLEAR_LINE)
        self._write(text + "\n")
        if self.drawn:
            self._draw()

    def finish(self) -> None:
        """End the live status line (a plain stream had the final state from ``update``)."""
        if self.drawn:
            self._write("\n")
        self.drawn = False

    def _draw(self) -> None:
        self._write(_CLEAR_LINE + self._status())
        self.drawn = True

    def _status(self) -> str:
        phase = self.phase.name if self.phase is not None else "SUBMITTED"
        text = f"{phase} {_elapsed(trio.current_time() - self.start)}"
        message = self.message.splitlines()[0] if self.message else ""
        return f"{text}: {message}" if message else text

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _describe_meta(meta: ResourceMeta) -> str:
    return meta.encode().decode("utf-8", errors="replace")


def _outputs_json(outputs: Mapping[str, Any]) -> str:
    return json.dumps(dict(outputs), default=_json_value, sort_keys=True)


def _json_value(value: Any) -> Any:
    if isinstance(value, Literal):
        try:
            return literal_to_native(value)
        except LiteralConversionError:
            return value.to_dict()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)
