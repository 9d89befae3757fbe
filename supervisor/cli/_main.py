"""Command line: ``python -m supervisor serve|journal|run|health|verify-recovery ...``."""

from __future__ import annotations

import argparse
import gc
import logging
import ssl
import sys
from collections.abc import Awaitable, Mapping, Sequence

import trio
import trio_asyncio

from connectors import ConnectorRegistry, load_connectors

from ..journal import Journal, JournalError, Owner, safe_url, sqlite_path
from ..observe import Metrics, MetricsServer, configure_logging
from ..service import Supervisor
from ._c0 import C0_COMMAND, add_c0_arguments, run_c0
from ._c0 import DESCRIPTION as _C0
from ._health import check_health
from ._journal import add_journal_commands, journal_command
from ._run import add_run_arguments, run_command
from ._settings import Settings, add_health_arguments, add_serve_arguments
from ._verify import add_verify_arguments, verify_command

__all__ = ["build_parser", "build_registry", "main"]

_log = logging.getLogger("supervisor")


def build_registry(settings: Settings) -> ConnectorRegistry:
    """The default registry, filled from entry points (unless disabled) and ``--modules``.

    Errors: ImportError, DuplicateConnector, TypeError from discovery.
    """
    return load_connectors(settings.entry_points, settings.modules)


async def _serve(
    settings: Settings,
    registry: ConnectorRegistry,
    metrics: Metrics,
    meta_key: bytes | None,
    tls: ssl.SSLContext | None,
) -> None:
    # Imported here: the journal and health commands need none of the gRPC server.
    from ..edge import Listening, serve_grpc

    # What start-up made (modules, classes, descriptors) lives as long as the process: out
    # of the collector's sight, full collections stop walking it, and so stop adding to the
    # tail latency of every RPC (see BENCHMARKS.md).
    gc.freeze()
    path = sqlite_path(settings.journal)
    if path is not None and not path.exists():
        # First start (or a journal lost and not restored): say so, never silently.
        print(f"journal {path} does not exist: creating a new, empty journal", flush=True)
    # One asyncio loop (trio-asyncio) for the whole process: the gRPC edge runs on it, and so
    # do asyncio-native connectors (flyte-sdk plugins).
    async with (
        trio_asyncio.open_loop(),
        Journal.open(
            settings.journal,
            on_commit=metrics.journal_committed,
            standby=_standing_by if settings.standby else None,
        ) as journal,
        Supervisor(
            registry,
            journal,
            metrics=metrics,
            meta_key=meta_key,
            adopt_unsigned=settings.adopt_unsigned,
        ).running() as supervisor,
        trio.open_nursery() as nursery,
    ):
        metrics.watch(supervisor, journal)
        print(f"journal {safe_url(settings.journal)}: resumed {supervisor.resumed} job(s)")
        print(f"resource_meta MACs: {_key_origin(settings)}", flush=True)
        # A cancel ends serve_grpc the way SIGTERM does (drain, then return): c0 --timeout.
        serving = trio.CancelScope()
        listening: Listening = await nursery.start(
            lambda task_status: _serve_within(
                serving,
                serve_grpc(
                    supervisor,
                    host=settings.host,
                    port=settings.port,
                    grace=settings.grace,
                    metrics=metrics,
                    max_message_bytes=settings.max_message_bytes,
                    idle_timeout=settings.idle_timeout,
                    stream_send_timeout=settings.stream_send_timeout,
                    keepalive=settings.keepalive,
                    tls=tls,
                    halt=journal.wait_lost,
                    task_status=task_status,
                ),
            )
        )
        if settings.stop_after is not None:
            serving.deadline = trio.current_time() + settings.stop_after
        # One parseable line for people and for tests that start us with --port 0.
        print(f"serving on {listening.host}:{listening.port}", flush=True)


async def _serve_within(scope: trio.CancelScope, serving: Awaitable[None]) -> None:
    with scope:
        await serving


def _journal_error(exc: BaseException) -> JournalError | None:
    """The journal error behind ``exc``, also from inside Trio's exception groups."""
    if isinstance(exc, JournalError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _journal_error(exc.exceptions[0])
    return None


def _standing_by(owner: Owner) -> None:
    print(f"standby: the journal is in use by {owner.describe()}; waiting to take over", flush=True)


def _key_origin(settings: Settings) -> str:
    """Where the resource_meta key comes from (never the key)."""
    if settings.meta_key_file:
        origin = f"key from {settings.meta_key_file}"
    elif settings.meta_key:
        origin = "key from --meta-key / SUPERVISOR_META_KEY"
    else:
        origin = "key kept in the journal"
    return origin + (
        ", unsigned metas adopted (--adopt-unsigned)" if settings.adopt_unsigned else ""
    )


def _print_connectors(registry: ConnectorRegistry) -> None:
    if not len(registry):
        print("serving no connectors (see --modules)", flush=True)
    for key, connector in registry:
        print(f"connector {connector.name!r}: task type {key}", flush=True)


def _start_metrics(settings: Settings, metrics: Metrics) -> MetricsServer | None:
    """Serve /metrics (``--metrics-port``) from its own thread. Errors: OSError."""
    if settings.metrics_port is None:
        return None
    server = MetricsServer.start(metrics, settings.host, settings.metrics_port)
    print(f"metrics on {settings.host}:{server.port}", flush=True)
    return server


def _tls(settings: Settings) -> ssl.SSLContext | None:
    """The gRPC port's TLS context, or None. Errors: ValueError, OSError (one line each)."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("give both --tls-cert and --tls-key")
    from ..edge import server_tls

    return server_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    try:
        meta_key = settings.resource_meta_key()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        tls = _tls(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        print(f"error: TLS: {exc}", file=sys.stderr)
        return 2
    try:
        registry = build_registry(settings)
    except Exception as exc:
        print(f"error: cannot load connectors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    _print_connectors(registry)
    metrics = Metrics()
    try:
        metrics_server = _start_metrics(settings, metrics)
    except OSError as exc:
        print(
            f"error: cannot serve metrics on port {settings.metrics_port}: {exc}", file=sys.stderr
        )
        return 2
    try:
        trio.run(_serve, settings, registry, metrics, meta_key, tls)
    except (JournalError, BaseExceptionGroup) as exc:
        error = _journal_error(exc)
        if error is None:
            raise
        print(f"error: journal {safe_url(settings.journal)}: {error}", file=sys.stderr)
        return 3
    finally:
        if metrics_server is not None:
            metrics_server.stop()
    print("stopped", flush=True)
    return 0


def health(args: argparse.Namespace) -> int:
    """Exit 0 only when the server at ``--address`` answers SERVING."""
    serving, text = check_health(args.address, timeout=args.timeout)
    print(text, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Every command and flag; defaults from ``environ`` (the process environment)."""
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
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
    "SERVING (1 otherwise). For container health checks and probes."
)
_VERIFY = (
    "Drive a server as Flyte's executor does (CreateTask re-sent after errors, GetTask on a "
    "cadence, DeleteTask on a share of jobs) while killing and restarting it on a seeded "
    "schedule; follow every job to its end and report lost jobs, duplicated creates and "
    "cancels, resource_meta changes and recovery times. Flags it does not know go to the "
    "server it starts (--serve). Exit 1 on any violation. See docs/recovery-testing.md."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "verify-recovery":
        return verify_command(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        return serve(Settings.from_args(args))
    if args.command == "run":
        return run_command(args)
    if args.command == "health":
        return health(args)
    if args.command == C0_COMMAND:
        return run_c0(args)
    return journal_command(args)
