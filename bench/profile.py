"""Sampling profiles of a server under load, with py-spy (from the reference environment).

``Profiler`` records collapsed stacks (``py-spy record --format raw``) of one process for a
while; ``summarize`` turns them into the functions that hold the most samples, by self
time and by inclusive time, which is what BENCHMARKS.md quotes.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "summarize"]

SAMPLE_RATE = 250


class Profiler:
    """``py-spy record`` of ``pid`` (all threads, without pausing it) into ``output``."""

    def __init__(self, py_spy: Path, pid: int, output: Path, *, seconds: float) -> None:
        self.output = output
        command = [
            str(py_spy),
            *("record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))),
            *("--rate", str(SAMPLE_RATE), "--format", "raw", "--output", str(output)),
            *("--nonblocking", "--threads"),
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    def wait(self, timeout: float = 60.0) -> str:
        """Wait for py-spy to write its file; its stderr (empty when all went well)."""
        _, stderr = self._process.communicate(timeout=timeout)
        return stderr.decode(errors="replace") if self._process.returncode else ""


def _function(frame: str) -> str:
    """``name (path/to/module.py:123)`` -> ``name (module.py)``: lines folded together."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})" if path else name


def summarize(collapsed: Path, *, top: int = 25) -> str:
    """The ``top`` functions by self and by inclusive samples, as text."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} samples at {SAMPLE_RATE} Hz ({total / SAMPLE_RATE:.1f} CPU-s sampled)"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\ntop {top} by {title} time:")
        for name, count in counter.most_common(top):
            lines.append(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines) + "\n"
