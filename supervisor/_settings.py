"""Settings of ``serve``: each one a flag with an environment variable behind its default."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_JOURNAL",
    "ENV_PREFIX",
    "Settings",
    "add_journal_argument",
    "add_serve_arguments",
]

ENV_PREFIX = "SUPERVISOR_"
#: A SQLite file beside the process connector's job directories (``.supervisor/jobs``).
DEFAULT_JOURNAL = "sqlite:///.supervisor/journal.db"


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    modules: tuple[str, ...] = ()
    entry_points: bool = True
    grace: float = 10.0
    log_level: str = "INFO"
    journal: str = DEFAULT_JOURNAL

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        return cls(
            host=args.host,
            port=args.port,
            modules=tuple(m for m in args.modules if m),
            entry_points=args.entry_points,
            grace=args.grace,
            log_level=args.log_level.upper(),
            journal=args.journal,
        )


def _env(name: str, default: str, environ: Mapping[str, str]) -> str:
    return environ.get(ENV_PREFIX + name, default)


def _modules(value: str) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()]


def _bool(value: str) -> bool:
    folded = value.strip().lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def add_journal_argument(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    env = os.environ if environ is None else environ
    parser.add_argument(
        "--journal",
        default=_env("JOURNAL", DEFAULT_JOURNAL, env),
        metavar="URL",
        help="journal database: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(env SUPERVISOR_JOURNAL; default %(default)s)",
    )


def add_serve_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """Add the flags of ``serve``; defaults come from SUPERVISOR_* environment variables."""
    env = os.environ if environ is None else environ
    d = Settings()
    add_journal_argument(parser, env)
    parser.add_argument(
        "--host",
        default=_env("HOST", d.host, env),
        help="address to listen on (env SUPERVISOR_HOST; default %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(_env("PORT", str(d.port), env)),
        help="gRPC port; 0 picks a free one (env SUPERVISOR_PORT; default %(default)s)",
    )
    parser.add_argument(
        "--modules",
        nargs="*",
        default=_modules(_env("MODULES", "", env)),
        metavar="MODULE",
        help="extra Python modules to import connectors from "
        "(env SUPERVISOR_MODULES, comma-separated)",
    )
    parser.add_argument(
        "--entry-points",
        type=_bool,
        default=_bool(_env("ENTRY_POINTS", "true", env)),
        metavar="BOOL",
        help="load connectors advertised by installed packages "
        "(env SUPERVISOR_ENTRY_POINTS; default %(default)s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(_env("GRACE", str(d.grace), env)),
        metavar="SECONDS",
        help="on SIGTERM, how long calls under way may take to finish "
        "(env SUPERVISOR_GRACE; default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", d.log_level, env),
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"],
        help="(env SUPERVISOR_LOG_LEVEL; default %(default)s)",
    )


def parse_serve(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="supervisor serve")
    add_serve_arguments(parser, environ)
    return Settings.from_args(parser.parse_args(argv))
