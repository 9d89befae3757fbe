"""Command line: ``python -m supervisor serve ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from connectors import ConnectorRegistry

from ._server import Listening, serve_grpc
from ._service import DirectService
from ._settings import Settings, add_serve_arguments

__all__ = ["build_registry", "main"]

_log = logging.getLogger("supervisor")


def build_registry(settings: Settings) -> ConnectorRegistry:
    """Connectors from entry points (unless disabled) and ``--modules``.

    Errors: ImportError, DuplicateConnector, TypeError from discovery.
    """
    registry = ConnectorRegistry()
    if settings.entry_points:
        registry.load_entry_points()
    for module in settings.modules:
        registry.load_module(module)
    return registry


async def _serve(settings: Settings, registry: ConnectorRegistry) -> None:
    service = DirectService(registry)
    async with trio.open_nursery() as nursery:
        listening: Listening = await nursery.start(
            lambda task_status: serve_grpc(
                service,
                host=settings.host,
                port=settings.port,
                grace=settings.grace,
                task_status=task_status,
            )
        )
        # One parseable line for people and for tests that start us with --port 0.
        print(f"serving on {listening.host}:{listening.port}", flush=True)


def _print_connectors(registry: ConnectorRegistry) -> None:
    if not len(registry):
        print("serving no connectors (see --modules)", flush=True)
    for key, connector in registry:
        print(f"connector {connector.name!r}: task type {key}", flush=True)


def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        registry = build_registry(settings)
    except Exception as exc:
        print(f"error: cannot load connectors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    _print_connectors(registry)
    trio.run(_serve, settings, registry)
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="A durable connector service for Flyte.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the gRPC connector service")
    add_serve_arguments(serve_parser)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(Settings.from_args(args))
    parser.error(f"unknown command {args.command!r}")
    return 2
