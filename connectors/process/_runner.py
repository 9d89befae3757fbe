"""The detached runner of one process job: standard library only.

Started by the connector as ``python -I .../_runner.py JOB_DIR`` (by path, in isolated
mode: it needs nothing but the standard library, so it neither depends on this package
being importable nor pays for importing it) in a new session, holding the job directory's
``lock`` on an inherited descriptor. It forks once more, so the first process exits at once
(the connector reaps it) and the second is reparented to init: it outlives the supervisor.
The second process starts the command in its own process group with stdout/stderr
redirected to files, records the group leader's pid and start time, waits, and records the
exit status.
It keeps the lock until it exits, so "lock held" means "a runner owns this job".

The connector imports this module for the file names and ``write_atomic``; it must not
import anything outside the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

__all__ = [
    "CANCELLED",
    "EXIT_STATUS",
    "INPUTS",
    "LOCK",
    "OUTPUTS",
    "PID",
    "RUNNER_LOG",
    "SPEC",
    "STARTED",
    "STDERR",
    "STDOUT",
    "main",
    "process_start_time",
    "write_atomic",
]

# The layout of a job directory.
SPEC = "spec.json"
INPUTS = "inputs.json"
OUTPUTS = "outputs.json"
PID = "pid"
STDOUT = "stdout"
STDERR = "stderr"
EXIT_STATUS = "exit_status"
CANCELLED = "cancelled"
STARTED = "started"
LOCK = "lock"
RUNNER_LOG = "runner.log"

#: Exit codes recorded when the command cannot be started (the shell's conventions).
_NOT_FOUND = 127
_NOT_EXECUTABLE = 126


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see all of it or nothing (write, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot: ``/proc/PID/stat`` field 22).

    With the pid it names one process for the machine's uptime: a pid reused by another
    process has another start time. None when the process is gone or there is no ``/proc``.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # Field 2 (the command name) is in parentheses and may hold spaces: split after it.
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[1])
    if os.fork():
        # The first process: its parent (the connector) waits for this exit.
        os._exit(0)
    _run(job_dir)
    return 0


def _run(job_dir: Path) -> None:
    try:
        proc = _start(job_dir)
    except Exception as exc:
        traceback.print_exc()  # into runner.log
        _record_exit(job_dir, 1, error=f"the runner could not start the command: {exc}")
        return
    if proc is None:
        return
    # The pid and the process's start time: a delete signals the group only while its
    # leader is still this process (or gone), never a process that reused the pid.
    started = process_start_time(proc.pid)
    record = str(proc.pid) if started is None else f"{proc.pid} {started}"
    write_atomic(job_dir / PID, record.encode())
    # A delete that came before the pid existed left only the marker: honour it here.
    # (delete writes the marker, then reads the pid; we write the pid, then read the marker.)
    if (job_dir / CANCELLED).exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    _record_exit(job_dir, proc.wait())


def _start(job_dir: Path) -> subprocess.Popen[bytes] | None:
    """Start the command; None when it was cancelled first or could not be started."""
    spec = json.loads((job_dir / SPEC).read_bytes())
    write_atomic(job_dir / STARTED, b"")
    if (job_dir / CANCELLED).exists():
        return None
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env["FLYTE_JOB_DIR"] = str(job_dir)
    env["FLYTE_INPUTS_FILE"] = str(job_dir / INPUTS)
    env["FLYTE_OUTPUTS_FILE"] = str(job_dir / OUTPUTS)
    env["FLYTE_OUTPUT_PREFIX"] = spec.get("output_prefix") or ""
    with open(job_dir / STDOUT, "wb") as out, open(job_dir / STDERR, "wb") as err:
        try:
            return subprocess.Popen(
                spec["command"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=spec.get("cwd") or None,
                env=env,
                process_group=0,
            )
        except OSError as exc:
            message = f"cannot start {spec['command']!r}: {exc}"
            err.write(f"{message}\n".encode())
            code = _NOT_FOUND if isinstance(exc, FileNotFoundError) else _NOT_EXECUTABLE
            _record_exit(job_dir, code, error=message)
            return None


def _record_exit(job_dir: Path, returncode: int, *, error: str | None = None) -> None:
    status: dict[str, object] = {"returncode": returncode}
    if error is not None:
        status["error"] = error
    write_atomic(job_dir / EXIT_STATUS, json.dumps(status).encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
