"""Reading a job's stdout and stderr files as log lines."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from flyteproto.flyteidl2.connector import GetTaskLogsResponse, GetTaskLogsResponseBody
from flyteproto.flyteidl2.logs.dataplane import LogLine, LogLineOriginator

__all__ = ["log_responses", "tail_lines"]

#: A response body is sent once it holds this many bytes of log text (gRPC messages are
#: limited to 4 MiB by default) ...
MAX_RESPONSE_BYTES = 1024 * 1024
#: ... or this many lines.
MAX_RESPONSE_LINES = 10_000
#: Longer lines are cut to this many characters.
MAX_LINE_CHARS = 64 * 1024
#: Files are read in blocks of this size.
_BLOCK = 64 * 1024


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of the file at ``path`` (none if it does not exist). Blocking."""
    if n <= 0:
        return []
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed by the with below
    except FileNotFoundError:
        return []
    with f:
        pos = f.seek(0, os.SEEK_END)
        data = b""
        # n complete lines need more than n newlines before them, unless the file starts.
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    return [_decode(line) for line in _split(data)[-n:]]


async def log_responses(
    stdout: Path, stderr: Path, *, lines: int | None = None
) -> AsyncIterator[GetTaskLogsResponse]:
    """The stdout lines, then the stderr lines, as GetTaskLogsResponse bodies.

    ``lines``: only the last so many lines of that sequence (all when None or 0). There is
    always at least one response; large logs are split over several.
    """
    batch = _Batch()
    if lines:
        err = await trio.to_thread.run_sync(tail_lines, stderr, lines)
        out = await trio.to_thread.run_sync(tail_lines, stdout, lines - len(err))
        for text in [*out, *err]:
            if batch.add(text):
                yield batch.take()
    else:
        for path in (stdout, stderr):
            async for chunk in _read_lines(path):
                for text in chunk:
                    if batch.add(text):
                        yield batch.take()
    if batch.lines or not batch.sent:
        yield batch.take()


class _Batch:
    """Log lines waiting to be sent in one response body."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self.size = 0
        self.sent = False

    def add(self, text: str) -> bool:
        """Add a line; True when the batch is full and should be taken."""
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " [line truncated]"
        self.lines.append(LogLine(message=text, originator=LogLineOriginator.USER))
        self.size += len(text)
        return self.size >= MAX_RESPONSE_BYTES or len(self.lines) >= MAX_RESPONSE_LINES

    def take(self) -> GetTaskLogsResponse:
        body = GetTaskLogsResponseBody(lines=self.lines)
        self.lines, self.size, self.sent = [], 0, True
        return GetTaskLogsResponse(body=body)


async def _read_lines(path: Path) -> AsyncIterator[list[str]]:
    """The lines of ``path`` a block at a time, read in a worker thread."""
    try:
        f = await trio.open_file(path, "rb")
    except FileNotFoundError:
        return
    async with f:
        rest = b""
        while block := await f.read(_BLOCK):
            *complete, rest = (rest + block).split(b"\n")
            yield [_decode(line) for line in complete]
        if rest:
            yield [_decode(rest)]


def _split(data: bytes) -> list[bytes]:
    parts = data.split(b"\n")
    if parts and not parts[-1]:
        parts.pop()
    return parts


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").removesuffix("\r")
