"""One job's directory: starting its runner, reading its state, recording a cancel.

Every method here blocks (file system, process spawning): call them through
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .._phase import Phase
from .._resource import Resource, TaskLog
from . import _runner
from ._logs import tail_lines
from ._runner import (
    CANCELLED,
    EXIT_STATUS,
    INPUTS,
    LOCK,
    OUTPUTS,
    PID,
    RUNNER_LOG,
    SPEC,
    STARTED,
    STDERR,
    STDOUT,
    process_start_time,
    write_atomic,
)
from ._spec import JobSpec

__all__ = ["JobDir", "NotOurJob", "group_alive", "job_id_for_key", "signal_group"]

_log = logging.getLogger(__name__)

#: How many lines of stderr a failure message quotes.
STDERR_TAIL_LINES = 5

_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


def job_id_for_key(key: str) -> str:
    """The directory name for an idempotency key: the key itself when it is a safe file
    name, else its safe characters plus a hash of the whole key (so keys never collide)."""
    if _SAFE_ID.fullmatch(key):
        return key
    cleaned = _UNSAFE_RUN.sub("_", key).strip("._-")[:64]
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{cleaned}-{digest}" if cleaned else digest


class NotOurJob(ValueError):
    """A job directory the connector did not make: outside its root (a forged meta)."""


class JobDir:
    """The files of one job under its directory (see ``_runner`` for the layout)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def confined(cls, root: Path, job_id: str, path: str) -> JobDir:
        """The job directory ``path`` names, if it is ``root/job_id`` (symlinks resolved).

        Errors: NotOurJob otherwise: a resource_meta naming any other directory is forged,
        and nothing in it is read, written or signalled.
        """
        resolved = Path(path).resolve()
        if (
            not _SAFE_ID.fullmatch(job_id)
            or resolved.name != job_id
            or resolved.parent != root.resolve()
        ):
            raise NotOurJob(
                f"resource_meta names a job directory outside {root}: refused (forged, or "
                "made under another process root)"
            )
        return cls(resolved)

    @property
    def stdout(self) -> Path:
        return self.path / STDOUT

    @property
    def stderr(self) -> Path:
        return self.path / STDERR

    # Starting ---------------------------------------------------------------------------

    def start(self, spec: JobSpec, inputs: bytes) -> None:
        """Start the job's runner unless the job was started (or cancelled) already.

        Idempotent: a directory left by a create that crashed before its runner started is
        started now; one whose runner started, or is starting, is left alone. The runner
        inherits the directory's lock, which tells the two apart.
        Errors: RuntimeError when the runner could not be started; OSError.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if self._claimed():
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a runner, or another create, owns the job
            if self._claimed():
                return
            write_atomic(self.path / SPEC, spec.to_json())
            write_atomic(self.path / INPUTS, inputs)
            self._spawn_runner(fd)
        finally:
            os.close(fd)

    def _claimed(self) -> bool:
        return any((self.path / name).exists() for name in (STARTED, PID, EXIT_STATUS, CANCELLED))

    def _spawn_runner(self, lock_fd: int) -> None:
        # By path, in isolated mode: see the _runner docstring.
        argv = [sys.executable, "-I", _runner.__file__, str(self.path)]
        with open(self.path / RUNNER_LOG, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd="/",
                start_new_session=True,
                pass_fds=(lock_fd,),
            )
        # The first runner process exits as soon as it has forked the detached one.
        returncode = proc.wait()
        if returncode != 0:
            detail = "\n".join(tail_lines(self.path / RUNNER_LOG, STDERR_TAIL_LINES))
            raise RuntimeError(
                f"the process runner for {self.path} failed with exit code {returncode}"
                + (f":\n{detail}" if detail else "")
            )

    # State ------------------------------------------------------------------------------

    def state(self) -> Resource:
        """The job's phase, read from its files."""
        if not self.path.is_dir():
            return Resource(Phase.FAILED, f"job directory not found: {self.path}")
        links = [TaskLog(name="stdout", uri=f"file://{self.path}/{STDOUT}")]
        info: dict[str, Any] = {"job_dir": str(self.path)}
        if (self.path / CANCELLED).exists():
            return Resource(Phase.ABORTED, "cancelled", log_links=links, custom_info=info)
        status = self._exit_status()
        if status is not None:
            return self._finished(status, links, info)
        pid = self.pid()
        if pid is None:
            return Resource(
                Phase.INITIALIZING, "starting the process", log_links=links, custom_info=info
            )
        info["pid"] = pid
        if self._runner_alive():
            return Resource(Phase.RUNNING, log_links=links, custom_info=info)
        if _leader_alive(pid):
            message = "the runner is gone: this job's exit status will not be recorded"
            return Resource(Phase.RUNNING, message, log_links=links, custom_info=info)
        # The runner records the status before it exits: look again now it is gone.
        status = self._exit_status()
        if status is not None:
            return self._finished(status, links, info)
        return Resource(
            Phase.FAILED,
            "process vanished without an exit status",
            log_links=links,
            custom_info=info,
        )

    def pid(self) -> int | None:
        """The pid of the command (its process group's leader), once it has started."""
        return self._pid_record()[0]

    def _pid_record(self) -> tuple[int | None, str | None]:
        """The leader's pid and start time (None: a pid file from before start times)."""
        try:
            fields = (self.path / PID).read_text().split()
        except FileNotFoundError:
            return None, None
        return int(fields[0]), fields[1] if len(fields) > 1 else None

    def group_to_signal(self) -> int | None:
        """The job's process group, if signalling it reaches the job and nothing else.

        While the leader lives it must be the process the runner started (same start time;
        for a pid file from before start times, a process whose environment names this job
        directory). Once the leader is gone, a group of that id is still the job's: Linux
        does not reuse a pid while a process group bears it. None when not started or not
        ours (logged).
        """
        pid, recorded = self._pid_record()
        if pid is None:
            return None
        current = process_start_time(pid)
        if current is None:
            return pid
        ours = current == recorded if recorded is not None else self._environ_names_us(pid)
        if ours and _leader_alive(pid):
            return pid
        if not ours:
            _log.warning(
                "job %s: pid %d is not the process this job started: not signalled",
                self.path.name,
                pid,
            )
        return None

    def _environ_names_us(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"FLYTE_JOB_DIR={self.path}".encode() in environ.split(b"\0")

    def _exit_status(self) -> dict[str, Any] | None:
        try:
            value: dict[str, Any] = json.loads((self.path / EXIT_STATUS).read_bytes())
        except FileNotFoundError:
            return None
        return value

    def _runner_alive(self) -> bool:
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also drops a lock we took
        return False

    def _finished(
        self, status: dict[str, Any], links: list[TaskLog], info: dict[str, Any]
    ) -> Resource:
        returncode = int(status["returncode"])
        info["returncode"] = returncode
        if returncode != 0:
            return Resource(
                Phase.FAILED, self._failure_message(status), log_links=links, custom_info=info
            )
        try:
            outputs = json.loads((self.path / OUTPUTS).read_bytes())
        except FileNotFoundError:
            outputs = None
        except ValueError as exc:
            message = f"{OUTPUTS} is not valid JSON: {exc}"
            return Resource(Phase.FAILED, message, log_links=links, custom_info=info)
        if outputs is not None and not isinstance(outputs, dict):
            message = f"{OUTPUTS} must hold a JSON object, not {type(outputs).__name__}"
            return Resource(Phase.FAILED, message, log_links=links, custom_info=info)
        return Resource(Phase.SUCCEEDED, log_links=links, outputs=outputs, custom_info=info)

    def _failure_message(self, status: dict[str, Any]) -> str:
        returncode = int(status["returncode"])
        if status.get("error"):
            message = f"{status['error']} (exit code {returncode})"
        elif returncode < 0:
            message = f"process was killed by {_signal_name(-returncode)} (exit code {returncode})"
        else:
            message = f"process exited with code {returncode}"
        tail = tail_lines(self.stderr, STDERR_TAIL_LINES)
        if tail:
            message += "; last lines of stderr:\n" + "\n".join(tail)
        return message

    # Cancelling -------------------------------------------------------------------------

    def request_cancel(self) -> int | None:
        """Record that the job is cancelled; return the process group to signal, if any.

        None when there is nothing to stop: no directory, a finished job, or a command that
        has not started yet (its runner sees the mark and does not start it).
        """
        if not self.path.is_dir() or (self.path / EXIT_STATUS).exists():
            return None
        now = datetime.datetime.now(datetime.UTC).isoformat()
        write_atomic(self.path / CANCELLED, now.encode())
        # After the mark, then the pid: the runner writes the pid, then reads the mark.
        return self.group_to_signal()


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Not ours: the job's group is gone and its id belongs to someone else now.
        _log.warning("process group %d belongs to another user: treated as gone", pgid)
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists."""
    return signal_group(pgid, 0)


def _leader_alive(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
