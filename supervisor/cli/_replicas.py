"""``python -m supervisor replicas``: the replicas on one journal, live or dead, and their jobs.

Read-only, like ``journal ls`` (``JournalReader``). A replica's heartbeat age is measured on
the clock that stamps heartbeats: PostgreSQL's own, so that this host's clock never matters;
for SQLite, this host's (one host owns a SQLite journal). A replica is dead once its last
heartbeat is ``--dead-after`` seconds old: what its peers judge, if they run with the same
setting (the variable is the one ``serve`` reads). Unfinished jobs that no listed replica
owns (released at a SIGTERM, or their owner's row pruned) get a line of their own: the next
heartbeat of a live replica adopts them.

Exit codes as the journal commands: 0 done, 2 bad arguments or journal URL, 3 journal error.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from typing import Any

from ..journal import JournalError, JournalReader, ReplicaReport, ReplicaStatus, safe_url
from ..service import LeaseRules
from ._errors import UserError, report
from ._journal import _print_json, _print_table
from ._settings import ENVIRONMENT, add_debug_argument, add_journal_argument, positive_seconds

__all__ = [
    "DEAD_AFTER_ENV",
    "DEFAULT_DEAD_AFTER",
    "DESCRIPTION",
    "add_replicas_arguments",
    "replicas_command",
    "report_json",
]

#: The variable behind ``serve --dead-after``: replicas judge each other by it.
DEAD_AFTER_ENV = ENVIRONMENT["--dead-after"]
DEFAULT_DEAD_AFTER = LeaseRules().dead_after  # the replicas' own default

DESCRIPTION = (
    "List the replicas (serve processes) on the journal: host, pid, start, heartbeat age by "
    "the journal's clock, live or dead, and the unfinished jobs each owns; then the "
    "unfinished jobs nobody listed owns. Read-only: safe against running servers."
)


def add_replicas_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """``--journal``, ``--dead-after`` (env SUPERVISOR_DEAD_AFTER, as ``serve``), ``--json``."""
    env = os.environ if environ is None else environ
    add_journal_argument(parser, env)
    add_debug_argument(parser, env)
    parser.add_argument(
        "--dead-after",
        type=positive_seconds,
        default=env.get(DEAD_AFTER_ENV, str(DEFAULT_DEAD_AFTER)),
        metavar="SECONDS",
        help="call a replica dead once its last heartbeat is this old; give the replicas' "
        f"own setting (env {DEAD_AFTER_ENV}; default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def replicas_command(args: argparse.Namespace) -> int:
    """Print the replica report; a user's mistake is one line (``_errors``)."""
    try:
        with JournalReader.open(args.journal) as reader:
            found = reader.replica_report(args.dead_after)
    except (JournalError, UserError) as exc:
        code = report(exc, debug=args.log_level == "DEBUG", journal=args.journal)
        if code is None:  # pragma: no cover - every JournalError is explained
            raise
        return code
    if args.json:
        _print_json(report_json(found))
    else:
        _print_report(found, safe_url(args.journal))
    return 0


def report_json(found: ReplicaReport) -> dict[str, Any]:
    """The report as JSON: times as Unix seconds on the journal's clock (``clock``)."""
    return {
        "now": found.now,
        "clock": found.clock,
        "dead_after": found.dead_after,
        "replicas": [_replica_json(r) for r in found.replicas],
        "unowned": {
            "jobs": found.unowned,
            "released": found.released,
            "orphaned": found.orphaned,
        },
    }


def _replica_json(replica: ReplicaStatus) -> dict[str, Any]:
    return {
        "id": replica.id,
        "host": replica.host,
        "pid": replica.pid,
        "started": replica.started,
        "heartbeat": replica.heartbeat,
        "heartbeat_age": replica.heartbeat_age,
        "live": replica.live,
        "jobs": replica.jobs,
    }


def _print_report(found: ReplicaReport, url: str) -> None:
    live = sum(r.live for r in found.replicas)
    dead = len(found.replicas) - live
    print(
        f"journal {url}: {len(found.replicas)} replica(s), {live} live, {dead} dead "
        f"(dead after {found.dead_after:g} s without a heartbeat, by the {found.clock} clock)"
    )
    rows = [
        [
            r.id,
            r.host,
            str(r.pid),
            _started(r.started),
            f"{max(0.0, r.heartbeat_age):.1f}s",
            "live" if r.live else "dead",
            str(r.jobs),
        ]
        for r in found.replicas
    ]
    if rows:
        print()
        _print_table(["REPLICA", "HOST", "PID", "STARTED", "HEARTBEAT AGE", "STATE", "JOBS"], rows)
        print()
    print(f"unowned: {found.unowned} unfinished job(s){_unowned_detail(found)}")


def _started(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def _unowned_detail(found: ReplicaReport) -> str:
    if not found.unowned:
        return ""
    parts = []
    if found.released:
        parts.append(f"{found.released} released")
    if found.orphaned:
        parts.append(f"{found.orphaned} of replicas no longer listed")
    if any(r.live for r in found.replicas):
        waiting = "a live replica adopts them at its next heartbeat"
    else:
        waiting = "no live replica to adopt them"
    return f" ({', '.join(parts)}): {waiting}"
