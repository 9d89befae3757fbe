"""Settings of ``serve`` (and the other commands): each a flag with an environment variable
behind its default.

``ENVIRONMENT`` maps each flag to its variable: ``docs/configuration.md`` is generated from
the parsers and that mapping, and a test proves every variable is honoured.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..edge import LIVENESS_SERVICE

__all__ = [
    "DEFAULT_HEALTH_TIMEOUT",
    "DEFAULT_JOURNAL",
    "ENVIRONMENT",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "Settings",
    "add_connector_arguments",
    "add_health_arguments",
    "add_journal_argument",
    "add_serve_arguments",
    "metrics_port",
    "parse_serve",
    "positive_seconds",
]

ENV_PREFIX = "SUPERVISOR_"
#: A SQLite file beside the process connector's job directories (``.supervisor/jobs``).
DEFAULT_JOURNAL = "sqlite:///.supervisor/journal.db"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The shortest resource_meta key we accept (HMAC-SHA256 keys should be 32 bytes or more).
MIN_META_KEY_BYTES = 16
#: Seconds ``health`` waits for an answer.
DEFAULT_HEALTH_TIMEOUT = 5.0

#: Flag -> the environment variable behind its default.
ENVIRONMENT: dict[str, str] = {
    "--journal": "SUPERVISOR_JOURNAL",
    "--host": "SUPERVISOR_HOST",
    "--port": "SUPERVISOR_PORT",
    "--modules": "SUPERVISOR_MODULES",
    "--entry-points": "SUPERVISOR_ENTRY_POINTS",
    "--grace": "SUPERVISOR_GRACE",
    "--max-message-bytes": "SUPERVISOR_MAX_MESSAGE_BYTES",
    "--idle-timeout": "SUPERVISOR_IDLE_TIMEOUT",
    "--stream-send-timeout": "SUPERVISOR_STREAM_SEND_TIMEOUT",
    "--keepalive": "SUPERVISOR_KEEPALIVE",
    "--tls-cert": "SUPERVISOR_TLS_CERT",
    "--tls-key": "SUPERVISOR_TLS_KEY",
    "--tls-client-ca": "SUPERVISOR_TLS_CLIENT_CA",
    "--metrics-port": "SUPERVISOR_METRICS_PORT",
    "--ui": "SUPERVISOR_UI",
    "--log-level": "SUPERVISOR_LOG_LEVEL",
    "--log-format": "SUPERVISOR_LOG_FORMAT",
    "--meta-key": "SUPERVISOR_META_KEY",
    "--meta-key-file": "SUPERVISOR_META_KEY_FILE",
    "--adopt-unsigned": "SUPERVISOR_ADOPT_UNSIGNED",
    "--standby": "SUPERVISOR_STANDBY",
    "--heartbeat-interval": "SUPERVISOR_HEARTBEAT_INTERVAL",
    "--dead-after": "SUPERVISOR_DEAD_AFTER",
    "--adopt-batch": "SUPERVISOR_ADOPT_BATCH",
    "--workers": "SUPERVISOR_WORKERS",
    "--connector-poll-interval": "SUPERVISOR_CONNECTOR_POLL_INTERVAL",
}


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    modules: tuple[str, ...] = ()
    entry_points: bool = True
    grace: float = 10.0
    log_level: str = "INFO"
    log_format: str = "text"
    journal: str = DEFAULT_JOURNAL
    metrics_port: int | None = 9090  # None: no metrics endpoint; 0: a free port
    ui: bool = False  # the journal web view on the metrics port
    max_message_bytes: int = 4 * 1024 * 1024  # gRPC's default (edge.DEFAULT_MAX_MESSAGE_BYTES)
    idle_timeout: float | None = 300.0  # None: idle connections stay open
    stream_send_timeout: float | None = 300.0  # None: a stalled stream waits for ever
    keepalive: float | None = 60.0  # None: no keepalive pings
    tls_cert: str | None = None  # PEM files; with tls_key, the gRPC port speaks TLS
    tls_key: str | None = None
    tls_client_ca: str | None = None  # clients must present a certificate it signed
    meta_key: str | None = dataclasses.field(default=None, repr=False)  # a secret
    meta_key_file: str | None = None
    adopt_unsigned: bool = False
    stop_after: float | None = None  # seconds; then stop as on SIGTERM (c0 --timeout)
    standby: bool = False
    heartbeat_interval: float = 2.0  # replicas: seconds between two heartbeats
    dead_after: float = 10.0  # replicas: a replica without a heartbeat this long is dead
    adopt_batch: int = 500  # replicas: jobs taken over per transaction
    workers: int = 1  # serve processes (replicas) on this machine, one port (PostgreSQL)
    #: (task type name, seconds): a connector's poll interval set by the operator
    connector_poll_interval: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        return cls(
            host=args.host,
            port=args.port,
            modules=tuple(m for m in args.modules if m),
            entry_points=args.entry_points,
            grace=args.grace,
            log_level=args.log_level.upper(),
            log_format=args.log_format,
            journal=args.journal,
            metrics_port=args.metrics_port,
            ui=args.ui,
            max_message_bytes=args.max_message_bytes,
            idle_timeout=args.idle_timeout,
            stream_send_timeout=args.stream_send_timeout,
            keepalive=args.keepalive,
            tls_cert=args.tls_cert or None,
            tls_key=args.tls_key or None,
            tls_client_ca=args.tls_client_ca or None,
            meta_key=args.meta_key or None,
            meta_key_file=args.meta_key_file or None,
            adopt_unsigned=args.adopt_unsigned,
            standby=args.standby,
            heartbeat_interval=args.heartbeat_interval,
            dead_after=args.dead_after,
            adopt_batch=args.adopt_batch,
            workers=args.workers,
            connector_poll_interval=args.connector_poll_interval,
        )

    def resource_meta_key(self) -> bytes | None:
        """The configured resource_meta key (``--meta-key`` or the file's first line); None:
        use the one generated into the journal.

        Errors: ValueError with one line for the user (both given, unreadable file, too short).
        """
        if self.meta_key and self.meta_key_file:
            raise ValueError("give --meta-key or --meta-key-file, not both")
        key = self.meta_key
        if self.meta_key_file:
            try:
                with open(self.meta_key_file, encoding="utf-8") as file:
                    key = file.readline().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"cannot read --meta-key-file {self.meta_key_file}: {exc}"
                ) from None
        if key is None:
            return None
        if len(key.encode()) < MIN_META_KEY_BYTES:
            raise ValueError(
                f"the resource_meta key must be at least {MIN_META_KEY_BYTES} bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return key.encode()


def _default(flag: str, default: str, environ: Mapping[str, str]) -> str:
    """The flag's default: its environment variable if set, else ``default``.

    A string default goes through the flag's ``type`` like a command-line value, so a bad
    environment value is reported by argparse, naming the flag.
    """
    return environ.get(ENVIRONMENT[flag], default)


def _help(flag: str, text: str) -> str:
    return f"{text} (env {ENVIRONMENT[flag]}; default %(default)s)"


def _add(
    parser: argparse.ArgumentParser,
    flag: str,
    default: str,
    environ: Mapping[str, str],
    text: str,
    **kwargs: Any,
) -> None:
    parser.add_argument(
        flag, default=_default(flag, default, environ), help=_help(flag, text), **kwargs
    )


def _modules(value: str) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()]


def _bool(value: str) -> bool:
    folded = value.strip().lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def positive_seconds(value: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {value!r}")
    return seconds


def poll_intervals(value: str) -> tuple[tuple[str, float], ...]:
    """argparse type: ``TASK_TYPE=SECONDS[,TASK_TYPE=SECONDS...]`` (empty: none)."""
    pairs: dict[str, float] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        task_type, equals, seconds = item.partition("=")
        if not equals or not task_type.strip():
            raise argparse.ArgumentTypeError(f"not TASK_TYPE=SECONDS: {item!r}")
        pairs[task_type.strip()] = positive_seconds(seconds.strip())
    return tuple(pairs.items())


def _seconds_or_off(value: str) -> float | None:
    if value.strip().lower() == "off":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds or off: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return seconds


def metrics_port(value: str) -> int | None:
    """A port number; ``0`` picks a free port; ``off`` turns the endpoint off (None)."""
    folded = value.strip().lower()
    if folded in ("off", "none", "false", "no", ""):
        return None
    try:
        port = int(folded)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port or 'off': {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _log_level(value: str) -> str:
    upper = value.strip().upper()
    if upper not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"not one of {', '.join(LOG_LEVELS)}: {value!r}")
    return upper


def _log_format(value: str) -> str:
    folded = value.strip().lower()
    if folded not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"not one of {', '.join(LOG_FORMATS)}: {value!r}")
    return folded


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def add_journal_argument(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    _add(
        parser,
        "--journal",
        DEFAULT_JOURNAL,
        _env(environ),
        "journal database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB",
        metavar="URL",
    )


def add_debug_argument(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """``--log-level`` for the commands that only print (``journal ...``)."""
    _add(
        parser,
        "--log-level",
        Settings.log_level,
        _env(environ),
        "DEBUG adds the traceback to an error's one line",
        type=_log_level,
        metavar="LEVEL",
    )


def add_connector_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """``--modules`` and ``--entry-points``: where connectors come from (``serve`` and ``run``)."""
    env = _env(environ)
    parser.add_argument(
        "--modules",
        nargs="*",
        default=_modules(env.get(ENVIRONMENT["--modules"], "")),
        metavar="MODULE",
        help="extra Python modules to import connectors from (flyte-sdk modules too); the "
        "variable takes a comma-separated list (env SUPERVISOR_MODULES; default none)",
    )
    _add(
        parser,
        "--entry-points",
        "true",
        env,
        "load connectors advertised by installed packages",
        type=_bool,
        metavar="BOOL",
    )


def add_serve_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """Add the flags of ``serve``; defaults come from SUPERVISOR_* environment variables."""
    env = _env(environ)
    d = Settings()
    add_journal_argument(parser, env)
    _add(parser, "--host", d.host, env, "address to listen on (gRPC and metrics)")
    _add(parser, "--port", str(d.port), env, "gRPC port; 0 picks a free one", type=int)
    add_connector_arguments(parser, env)
    _add(
        parser,
        "--grace",
        str(d.grace),
        env,
        "on SIGTERM, how long calls under way may take to finish",
        type=float,
        metavar="SECONDS",
    )
    _add(
        parser,
        "--max-message-bytes",
        str(d.max_message_bytes),
        env,
        "largest request message accepted; a larger one is refused RESOURCE_EXHAUSTED "
        "before it is read",
        type=_positive_int,
        metavar="BYTES",
    )
    _add(
        parser,
        "--idle-timeout",
        str(d.idle_timeout),
        env,
        "close a gRPC connection with no call open and nothing received for so long; off "
        "keeps idle connections open",
        type=_seconds_or_off,
        metavar="SECONDS|off",
    )
    _add(
        parser,
        "--stream-send-timeout",
        str(d.stream_send_timeout),
        env,
        "end a GetTaskLogs stream (RESOURCE_EXHAUSTED) whose client reads nothing for so "
        "long, its flow-control window shut; off lets it wait for ever",
        type=_seconds_or_off,
        metavar="SECONDS|off",
    )
    _add(
        parser,
        "--keepalive",
        str(d.keepalive),
        env,
        "PING a gRPC connection this often, open calls or not, and close it when a ping "
        "is not answered within as long again (at most 20 s); off sends no pings",
        type=_seconds_or_off,
        metavar="SECONDS|off",
    )
    _add(
        parser,
        "--tls-cert",
        "",
        env,
        "serve gRPC over TLS with this certificate chain (PEM; needs --tls-key)",
        metavar="PATH",
    )
    _add(parser, "--tls-key", "", env, "the private key of --tls-cert (PEM)", metavar="PATH")
    _add(
        parser,
        "--tls-client-ca",
        "",
        env,
        "mutual TLS: clients must present a certificate signed by this CA (PEM)",
        metavar="PATH",
    )
    _add(
        parser,
        "--metrics-port",
        str(d.metrics_port),
        env,
        "Prometheus metrics port (HTTP, path /metrics); 0 picks a free one, off turns "
        "the endpoint off",
        type=metrics_port,
        metavar="PORT|off",
    )
    _add(
        parser,
        "--ui",
        str(d.ui).lower(),
        env,
        "also serve the read-only journal web view (as `journal web`) on the metrics port, "
        "at /; metrics stay at /metrics",
        type=_bool,
        metavar="BOOL",
    )
    _add(
        parser,
        "--log-level",
        d.log_level,
        env,
        f"one of {', '.join(LOG_LEVELS)}",
        type=_log_level,
        metavar="LEVEL",
    )
    _add(
        parser,
        "--log-format",
        d.log_format,
        env,
        "text (key=value lines) or json (one object a line)",
        type=_log_format,
        metavar="{text,json}",
    )
    parser.add_argument(
        "--meta-key",
        default=env.get(ENVIRONMENT["--meta-key"]),
        metavar="KEY",
        help="the key (at least 16 bytes; 64 hex characters recommended) that MACs the "
        "resource_metas this service hands out; every replica of one journal needs the "
        "same; without one, a key generated into the journal on first start is used; "
        "prefer the variable or --meta-key-file to a flag, which `ps` shows (env "
        "SUPERVISOR_META_KEY; default: none)",
    )
    _add(
        parser,
        "--meta-key-file",
        "",
        env,
        "a file whose first line is the resource_meta key (a mounted secret)",
        metavar="PATH",
    )
    _add(
        parser,
        "--adopt-unsigned",
        "false",
        env,
        "adopt resource_metas that carry no MAC (from Flyte's own connector service, or "
        "from a version before MACs): for a migration window only, since any client can "
        "then make this service poll or cancel any external job",
        type=_bool,
        metavar="BOOL",
    )
    _add(
        parser,
        "--standby",
        "false",
        env,
        "with a SQLite journal another server owns: wait, and take over when it stops "
        "(a hot standby), instead of refusing to start",
        type=_bool,
        metavar="BOOL",
    )
    _add(
        parser,
        "--heartbeat-interval",
        str(d.heartbeat_interval),
        env,
        "replicas: seconds between two heartbeats of this replica in the journal",
        type=positive_seconds,
        metavar="SECONDS",
    )
    _add(
        parser,
        "--dead-after",
        str(d.dead_after),
        env,
        "replicas: a replica without a heartbeat for this long is dead and its jobs are "
        "taken over (at least three heartbeat intervals); this replica stops its own jobs "
        "one heartbeat interval sooner when it cannot heartbeat",
        type=positive_seconds,
        metavar="SECONDS",
    )
    _add(
        parser,
        "--adopt-batch",
        str(d.adopt_batch),
        env,
        "replicas: jobs taken over from dead replicas per transaction",
        type=_positive_int,
        metavar="N",
    )
    _add(
        parser,
        "--workers",
        str(d.workers),
        env,
        "serve processes on this machine, one replica each, sharing the gRPC port "
        "(SO_REUSEPORT) and the journal: one per core; above 1 needs a PostgreSQL journal; "
        "worker i serves metrics on --metrics-port + i",
        type=_positive_int,
        metavar="N",
    )
    _add(
        parser,
        "--connector-poll-interval",
        "",
        env,
        "seconds between two polls of one job, per task type, instead of its connector's "
        "own interval, e.g. bigquery_query_job_task=60,databricks=30: every live job of "
        "that type makes one external call per interval (the external API's budget)",
        type=poll_intervals,
        metavar="TASK_TYPE=SECONDS,...",
    )


def add_health_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """Flags of ``health``: the address defaults to this machine and ``SUPERVISOR_PORT``."""
    port = _env(environ).get(ENVIRONMENT["--port"], str(Settings().port))
    parser.add_argument(
        "--address",
        default=f"127.0.0.1:{port}",
        metavar="HOST:PORT",
        help="the server to ask; by default this machine at the port of SUPERVISOR_PORT "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_HEALTH_TIMEOUT,
        metavar="SECONDS",
        help="give up after this long (default %(default)s)",
    )
    parser.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help=f"the health service name to ask: the whole server (readiness: NOT_SERVING "
        f"while the journal refuses writes) by default, {LIVENESS_SERVICE!r} for liveness "
        "(SERVING while the process answers)",
    )


def parse_serve(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """The settings ``serve`` would run with for ``argv`` and ``environ``."""
    parser = argparse.ArgumentParser(prog="supervisor serve")
    add_serve_arguments(parser, environ)
    return Settings.from_args(parser.parse_args(argv))
