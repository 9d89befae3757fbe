"""A local BigQuery run against the emulator, no Google account: ``./dev bigquery``.

    python -m tests.support.bigquery.local [TEMPLATE_FILE] [flags of `supervisor run`]

Starts bqemulator with the tests' proxy in front of it (so a query holding ``/*sleep=S*/``
is seen RUNNING for S seconds and Ctrl-C really cancels it), points the BigQuery connector
at it through ``BIGQUERY_EMULATOR_HOST``, and runs ``python -m supervisor run`` on the
template (default ``examples/templates/bigquery.json`` with its example inputs). The exit
code is the run's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from connectors.bigquery._client import EMULATOR_HOST_ENV

from .emulator import EmulatorUnavailable, running_emulator
from .proxy import BigQueryProxy

__all__ = ["DEFAULT_INPUTS", "DEFAULT_TEMPLATE", "main"]

_EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "templates"
DEFAULT_TEMPLATE = _EXAMPLES / "bigquery.json"
DEFAULT_INPUTS = _EXAMPLES / "bigquery.inputs.json"


def run_arguments(argv: Sequence[str]) -> list[str]:
    """The arguments of ``supervisor run``: the example template and inputs by default."""
    args = list(argv)
    if not args or args[0].startswith("-"):
        args.insert(0, str(DEFAULT_TEMPLATE))
        if "--inputs" not in args:
            args += ["--inputs", str(DEFAULT_INPUTS)]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = run_arguments(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="bqemulator-") as workdir, ExitStack() as stack:
        try:
            emulator = stack.enter_context(running_emulator(Path(workdir)))
        except EmulatorUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        proxy = stack.enter_context(BigQueryProxy(emulator.url))
        print(f"BigQuery emulator at {proxy.url}", file=sys.stderr, flush=True)
        env = {**os.environ, EMULATOR_HOST_ENV: proxy.url}
        run = subprocess.Popen([sys.executable, "-m", "supervisor", "run", *args], env=env)
        try:
            return run.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the run too: it cancels its job, then exits.
            return run.wait()


if __name__ == "__main__":
    raise SystemExit(main())
