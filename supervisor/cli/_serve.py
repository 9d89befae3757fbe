"""``serve``: the gRPC connector service, for ``python -m supervisor serve`` and ``c0``.

``serve`` starts in an order that changes nothing before it can serve: bind the metrics
and gRPC ports, open (and migrate) the journal, resume unfinished jobs, then accept calls.
A mistake at any step is one line on stderr and an exit code (``_errors``). Its own module
so that both commands that serve (``_main`` and ``_c0``) import it from below.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Collection, Sequence

import trio
import trio_asyncio

from connectors import ConnectorRegistry, load_connectors

from ..journal import Journal, Owner, safe_url, sqlite_path
from ..observe import Metrics, MetricsServer, configure_logging
from ..service import LeaseRules, Replica, Supervisor
from ._collector import freeze_survivors
from ._errors import EXIT_PORT, EXIT_USAGE, UserError, port_message, report
from ._settings import Settings
from ._socket import bind_port
from ._web import pages_for
from ._workers import REUSE_PORT_ENV, run_workers

__all__ = ["build_registry", "serve"]

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
    sock: socket.socket,
    meta_key: bytes | None,
    tls: ssl.SSLContext | None,
) -> None:
    # Imported here: the journal and health commands need none of the gRPC server.
    from ..edge import Listening, serve_grpc

    # What start-up made (modules, classes, descriptors) lives as long as the process, and
    # so do live actors: out of the collector's sight (``_collector``), full collections stop
    # walking them, and so stop adding to the tail latency of every RPC and poll.
    freeze_survivors()
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
        # Once the journal is ours (a standby may wait for it for days: collector on).
        _collector_off_during_start_up(),
        Supervisor(
            registry,
            journal,
            metrics=metrics,
            meta_key=meta_key,
            adopt_unsigned=settings.adopt_unsigned,
            replica=Replica(
                journal.replicas,
                LeaseRules(settings.heartbeat_interval, settings.dead_after),
                adopt_batch=settings.adopt_batch,
            ),
        ).running() as supervisor,
        trio.open_nursery() as nursery,
    ):
        _start_up_done()
        metrics.watch(supervisor, journal)
        assert supervisor.replica is not None
        print(f"replica {supervisor.replica.id}")
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
                    sock=sock,
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


@contextlib.asynccontextmanager
async def _collector_off_during_start_up() -> AsyncIterator[None]:
    """The cyclic collector off until ``_start_up_done`` (or the end, whatever happens).

    Resuming every unfinished job makes most of what the process will hold within seconds;
    left on, the collector walks the whole growing heap again at every 25 % of growth (16
    full collections in a resume of 30,000 jobs, more time than the resume's own work).
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _start_up_done() -> None:
    """The supervisor has started (every unfinished job adopted, its actor started): one
    full collection of what start-up made, then the collector on again."""
    gc.collect()
    gc.enable()


async def _serve_within(scope: trio.CancelScope, serving: Awaitable[None]) -> None:
    with scope:
        await serving


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


def _override_poll_intervals(
    registry: ConnectorRegistry, intervals: Sequence[tuple[str, float]]
) -> set[str]:
    """Set the poll interval of the connectors of each named task type (every version);
    the task types overridden. ValueError (one line) for a task type no connector serves."""
    for name, seconds in intervals:
        matched = [connector for key, connector in registry if key.name == name]
        if not matched:
            known = ", ".join(sorted({key.name for key, _ in registry})) or "none"
            raise ValueError(f"no connector serves task type {name!r} (task types: {known})")
        for connector in matched:
            connector.override_options(poll_interval=seconds)
    return {name for name, _ in intervals}


def _print_connectors(registry: ConnectorRegistry, overridden: Collection[str] = ()) -> None:
    if not len(registry):
        print("serving no connectors (see --modules)", flush=True)
    for key, connector in registry:
        every = f", polling every {connector.poll_interval:g} s" if key.name in overridden else ""
        print(f"connector {connector.name!r}: task type {key}{every}", flush=True)


def _start_metrics(settings: Settings, metrics: Metrics) -> MetricsServer | None:
    """Serve /metrics (``--metrics-port``) from its own thread. Errors: UserError."""
    if settings.metrics_port is None:
        return None
    pages = pages_for(settings.journal) if settings.ui else None
    try:
        server = MetricsServer.start(metrics, settings.host, settings.metrics_port, pages=pages)
    except OSError as exc:
        message = port_message("metrics", settings.host, settings.metrics_port, exc)
        raise UserError(message, EXIT_PORT) from exc
    print(f"metrics on {settings.host}:{server.port}", flush=True)
    if settings.ui:
        print(f"journal web view on http://{settings.host}:{server.port}/", flush=True)
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


def serve(settings: Settings, argv: Sequence[str] = ()) -> int:
    """Run the service until SIGTERM/SIGINT; a user's mistake is one line and an exit code.

    ``argv``: the flags given, for ``--workers`` above 1 (``_workers``), whose workers get
    them again."""
    if settings.workers > 1:
        return run_workers(settings, argv)
    configure_logging(settings.log_level, settings.log_format)
    debug = settings.log_level.upper() == "DEBUG"
    try:
        meta_key = settings.resource_meta_key()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        tls = _tls(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        print(f"error: TLS: {exc}", file=sys.stderr)
        return 2
    try:
        registry = build_registry(settings)
    except Exception as exc:
        if debug:
            _log.exception("cannot load connectors")
        print(f"error: cannot load connectors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        LeaseRules(settings.heartbeat_interval, settings.dead_after)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if settings.ui and settings.metrics_port is None:
        print("error: --ui serves on the metrics port: give --metrics-port", file=sys.stderr)
        return EXIT_USAGE
    try:
        overridden = _override_poll_intervals(registry, settings.connector_poll_interval)
    except ValueError as exc:
        print(f"error: --connector-poll-interval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print_connectors(registry, overridden)
    metrics = Metrics()
    try:
        metrics_server = _start_metrics(settings, metrics)
        sock = _bind(settings.host, settings.port)
    except UserError as exc:
        return report(exc, debug=debug) or EXIT_USAGE
    try:
        trio.run(_serve, settings, registry, metrics, sock, meta_key, tls)
    except Exception as exc:
        code = report(exc, debug=debug, journal=settings.journal)
        if code is None:
            raise
        return code
    finally:
        sock.close()
        if metrics_server is not None:
            metrics_server.stop()
    print("stopped", flush=True)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The gRPC socket, bound (a port in use shows here) before anything else starts, and
    listened on only when serving starts: until then (a standby waiting, jobs resuming)
    connections are refused, not queued. Errors: UserError."""
    # One of ``--workers`` (REUSE_PORT_ENV set): the workers share the port.
    return bind_port(
        host, port, reuse_address=True, reuse_port=bool(os.environ.get(REUSE_PORT_ENV))
    )
