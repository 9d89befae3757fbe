"""Run a command that sees a directory read-only, honestly, as root too.

Root ignores mode bits, so ``chmod`` proves nothing when the suite runs as root (CI does).
As root the command runs in a mount namespace of its own (``unshare -m``) where the
directory is bind-mounted read-only: writes fail with EROFS, as on a read-only volume or
a mounted backup, and the mount goes away with the process. As another user, a copy with
mode 0555 is enough (that user cannot write it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

__all__ = ["run_read_only"]

_MOUNT_READ_ONLY = (
    'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 '
    '&& if touch "$0/.probe" 2>/dev/null; then echo "not read-only" >&2; exit 99; fi '
    '&& exec "$@"'
)


def run_read_only(
    source: Path,
    view: Path,
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` while ``view`` shows ``source``'s files read-only.

    Skips the test when this machine can do neither (root without mount namespaces).
    """
    view.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        shutil.copytree(source, view, dirs_exist_ok=True)
        view.chmod(0o555)
        argv = list(command)
    else:
        if (
            shutil.which("unshare") is None
            or subprocess.run(
                ["unshare", "-m", "true"], capture_output=True, check=False
            ).returncode
        ):
            pytest.skip("running as root without mount namespaces: no honest read-only view")
        argv = [
            "unshare", "-m", "sh", "-c", _MOUNT_READ_ONLY, str(view), str(source), str(view),
            *command,
        ]  # fmt: skip
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode != 99, "the view was writable"
    return result
