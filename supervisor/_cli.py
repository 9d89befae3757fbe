"""Command line: ``python -m supervisor serve|journal ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio
import trio_asyncio

from connectors import ConnectorRegistry

from ._server import Listening, serve_grpc
from ._settings import Settings, add_journal_argument, add_serve_arguments
from ._supervisor import Supervisor
from .journal import Journal, JournalError, current_revision, head_revision, upgrade

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
    # One asyncio loop (trio-asyncio) for the whole process: the gRPC edge runs on it, and so
    # do asyncio-native connectors (flyte-sdk plugins).
    async with (
        trio_asyncio.open_loop(),
        Journal.open(settings.journal) as journal,
        Supervisor(registry, journal).running() as supervisor,
        trio.open_nursery() as nursery,
    ):
        print(f"journal {_safe_url(settings.journal)}: resumed {supervisor.resumed} job(s)")
        listening: Listening = await nursery.start(
            lambda task_status: serve_grpc(
                supervisor,
                host=settings.host,
                port=settings.port,
                grace=settings.grace,
                task_status=task_status,
            )
        )
        # One parseable line for people and for tests that start us with --port 0.
        print(f"serving on {listening.host}:{listening.port}", flush=True)


def _safe_url(url: str) -> str:
    """The journal URL without its password, fit for logs."""
    from sqlalchemy import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _print_connectors(registry: ConnectorRegistry) -> None:
    if not len(registry):
        print("serving no connectors (see --modules)", flush=True)
    for key, connector in registry:
        print(f"connector {connector.name!r}: task type {key}", flush=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def serve(settings: Settings) -> int:
    _configure_logging(settings.log_level)
    try:
        registry = build_registry(settings)
    except Exception as exc:
        print(f"error: cannot load connectors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    _print_connectors(registry)
    try:
        trio.run(_serve, settings, registry)
    except JournalError as exc:
        print(f"error: journal {_safe_url(settings.journal)}: {exc}", file=sys.stderr)
        return 3
    print("stopped", flush=True)
    return 0


def journal_command(args: argparse.Namespace) -> int:
    _configure_logging("WARNING")
    try:
        return _journal_command(args)
    except JournalError as exc:
        print(f"error: journal {_safe_url(args.journal)}: {exc}", file=sys.stderr)
        return 3


def _journal_command(args: argparse.Namespace) -> int:
    if args.journal_command == "upgrade":
        upgrade(args.journal)
        print(f"journal {_safe_url(args.journal)} is at revision {current_revision(args.journal)}")
        return 0
    if args.journal_command == "revision":
        current = current_revision(args.journal)
        print(f"current {current or '(empty)'}; head {head_revision()}")
        return 0
    raise AssertionError(args.journal_command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="A durable connector service for Flyte.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the gRPC connector service")
    add_serve_arguments(serve_parser)
    journal_parser = commands.add_parser("journal", help="manage the journal database")
    journal_commands = journal_parser.add_subparsers(dest="journal_command", required=True)
    for name, text in (
        ("upgrade", "create or upgrade the journal schema to the latest revision"),
        ("revision", "print the journal's schema revision"),
    ):
        add_journal_argument(journal_commands.add_parser(name, help=text))
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(Settings.from_args(args))
    return journal_command(args)
