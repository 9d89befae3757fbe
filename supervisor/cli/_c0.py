"""``c0``: flyte-sdk's connector-service command line, served by the supervisor.

Flyte's Helm chart (``charts/flyteconnector``) starts the connector service as
``c0 --port 8000 --prometheus_port 9090 --worker N --timeout S --modules ...``. This command
takes those flags with flyte-sdk's defaults, so our image drops into the chart unchanged;
it is ``serve`` underneath, with every other setting (the journal first) from the
``SUPERVISOR_*`` environment variables. Like flyte-sdk's, it appends the working directory
to ``sys.path`` (a console script does not have it) so that ``--modules`` finds local modules.

``--worker`` sizes flyte-sdk's gRPC thread pool: it means nothing here (one event loop
serves every call; blocking connector calls run in worker threads of their own) and is
accepted and ignored. ``--timeout S`` stops the server after S seconds, as flyte-sdk's does,
and the way SIGTERM does: calls under way finish, nothing external is cancelled, exit 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence

from ._serve import serve
from ._settings import Settings, metrics_port, parse_serve

__all__ = ["C0_COMMAND", "DESCRIPTION", "add_c0_arguments", "c0_main", "c0_settings", "run_c0"]

#: The name of the command (``python -m supervisor c0``, and the ``c0`` console script).
C0_COMMAND = "c0"
#: flyte-sdk's defaults.
C0_PORT = 8000
C0_PROMETHEUS_PORT = 9090
C0_WORKERS = 10

DESCRIPTION = (
    "flyte-sdk's connector-service command (`c0`, as Flyte's Helm chart runs it), served by "
    "the supervisor: the same flags and defaults; every other setting (the journal first) "
    "from the SUPERVISOR_* environment variables of `serve`."
)


def _port(value: str) -> int:
    port = metrics_port(value)
    if port is None:
        raise argparse.ArgumentTypeError(f"not a port: {value!r}")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"negative: {value!r}")
    return seconds


def add_c0_arguments(parser: argparse.ArgumentParser) -> None:
    """flyte-sdk's ``c0`` flags, with its defaults (none of them from the environment)."""
    parser.add_argument(
        "--port",
        type=_port,
        default=C0_PORT,
        help="gRPC port of the connector service; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--prometheus_port",
        type=_port,
        default=C0_PROMETHEUS_PORT,
        metavar="PORT",
        help="Prometheus metrics port (HTTP, path /metrics); 0 picks a free one "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--worker",
        type=int,
        default=C0_WORKERS,
        metavar="N",
        help="flyte-sdk's gRPC thread-pool size: accepted and ignored (one event loop serves "
        "every call) (default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds, as on SIGTERM (calls under way finish; no "
        "external job is touched); for tests, as in flyte-sdk (default: run until stopped)",
    )
    parser.add_argument(
        "--modules",
        action="extend",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="modules to load connectors from, after every installed entry point (repeat "
        "the flag or list several; SUPERVISOR_MODULES adds to them) (default none)",
    )


def c0_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """``serve``'s settings from the environment, with the ``c0`` flags on top.

    Errors: SystemExit (2, with a message) for a bad environment variable, as ``serve``.
    """
    base = parse_serve([], environ)
    return dataclasses.replace(
        base,
        port=args.port,
        metrics_port=args.prometheus_port,
        modules=(*base.modules, *(m for m in args.modules if m)),
        stop_after=args.timeout,
    )


def c0_main(argv: Sequence[str] | None = None) -> int:
    """The ``c0`` console script."""
    parser = argparse.ArgumentParser(prog=C0_COMMAND, description=DESCRIPTION)
    add_c0_arguments(parser)
    return run_c0(parser.parse_args(argv))


def run_c0(args: argparse.Namespace) -> int:
    """Serve with the ``c0`` flags in ``args``."""
    working_dir = os.getcwd()
    if all(os.path.realpath(path or ".") != working_dir for path in sys.path):
        sys.path.append(working_dir)
    return serve(c0_settings(args))
