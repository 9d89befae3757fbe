"""Command line: ``python -m supervisor serve|journal|replicas|run|health|c0|verify-recovery``.

The parser of every command, and the dispatch to each command's module (``serve`` in
``_serve``). A mistake is one line on stderr and an exit code (``_errors``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from ._c0 import C0_COMMAND, add_c0_arguments, run_c0
from ._c0 import DESCRIPTION as _C0
from ._health import check_health
from ._journal import add_journal_commands, journal_command
from ._replicas import DESCRIPTION as _REPLICAS
from ._replicas import add_replicas_arguments, replicas_command
from ._run import add_run_arguments, run_command
from ._serve import serve
from ._settings import Settings, add_health_arguments, add_serve_arguments
from ._verify import add_verify_arguments, verify_command

__all__ = ["build_parser", "main"]


def health(args: argparse.Namespace) -> int:
    """Exit 0 only when the server at ``--address`` answers SERVING."""
    serving, text = check_health(args.address, timeout=args.timeout, service=args.service)
    print(text, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


def build_parser(
    environ: Mapping[str, str] | None = None, *, prog: str = "python -m supervisor"
) -> argparse.ArgumentParser:
    """Every command and flag; defaults from ``environ`` (the process environment)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A durable connector service for Flyte.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="run the gRPC connector service", description=_SERVE
    )
    add_serve_arguments(serve_parser, environ)
    journal_parser = commands.add_parser(
        "journal", help="inspect and manage the journal database", description=_JOURNAL
    )
    add_journal_commands(journal_parser, environ)
    replicas_parser = commands.add_parser(
        "replicas", help="list the replicas on the journal, live and dead", description=_REPLICAS
    )
    add_replicas_arguments(replicas_parser, environ)
    run_parser = commands.add_parser(
        "run", help="run one connector task locally, without a cluster", description=_RUN
    )
    add_run_arguments(run_parser, environ)
    health_parser = commands.add_parser(
        "health", help="check a server's gRPC health service", description=_HEALTH
    )
    add_health_arguments(health_parser, environ)
    c0_parser = commands.add_parser(
        C0_COMMAND,
        help="serve, with flyte-sdk's c0 command line (Flyte's Helm chart)",
        description=_C0,
    )
    add_c0_arguments(c0_parser)
    verify_parser = commands.add_parser(
        "verify-recovery",
        help="prove restart recovery: drive a server through crashes and check every job",
        description=_VERIFY,
    )
    add_verify_arguments(verify_parser)
    return parser


_SERVE = "Serve the Flyte connector gRPC API, running every job as an actor with a journal."
_JOURNAL = "Inspect the journal (read-only: safe against a running server) or upgrade it."
_RUN = (
    "Run one connector task from its TaskTemplate file: submit, poll, show progress, print "
    "the outputs. Ctrl-C cancels the external job before exiting. Exit 0 when the task "
    "succeeded."
)
_HEALTH = (
    "Ask a server's grpc.health.v1.Health service for its status; exit 0 only when it is "
    "SERVING (1 otherwise). For container health checks and probes: readiness by default "
    "(NOT_SERVING while the journal refuses writes), liveness with --service liveness."
)
_VERIFY = (
    "Drive a server as Flyte's executor does (CreateTask re-sent after errors, GetTask on a "
    "cadence, DeleteTask on a share of jobs) while killing and restarting it on a seeded "
    "schedule; follow every job to its end and report lost jobs, duplicated creates and "
    "cancels, resource_meta changes and recovery times. Flags it does not know go to the "
    "server it starts (--serve). Exit 1 on any violation. See docs/recovery-testing.md."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(prog=_program_name())
    args, extra = parser.parse_known_args(argv)
    if args.command == "verify-recovery":
        return verify_command(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # The reader went away (``journal ls | head``): what it wanted, it has.
        _silence_stdout()
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        given: list[str] = args.argv
        flags = given[given.index("serve") + 1 :] if "serve" in given else []
        return serve(Settings.from_args(args), flags)
    if args.command == "run":
        return run_command(args)
    if args.command == "health":
        return health(args)
    if args.command == C0_COMMAND:
        return run_c0(args)
    if args.command == "replicas":
        code = replicas_command(args)
        sys.stdout.flush()
        return code
    code = journal_command(args)
    sys.stdout.flush()
    return code


def _program_name() -> str:
    """``python -m supervisor``, or the name of the script that started us."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m supervisor" if name in ("", "__main__.py", "-c") else name


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
