"""``python -m supervisor journal ls|show|stats|upgrade|revision``: the journal for operators.

``ls``, ``show`` and ``stats`` only read (``JournalReader``: SQLite ``mode=ro``, PostgreSQL
read-only sessions), so they are safe against the journal of a running server and never
hold up its writes. Tables for people, ``--json`` for scripts. Nothing secret is printed:
the journal holds none, and of the journalled request only names are shown (secret and
config keys, environment variable names), never values.

Exit codes: 0 done, 1 no such job, 2 bad arguments or journal URL, 3 journal error. A
closed pipe (``journal ls | head``) ends the output quietly (``cli._main``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from betterproto2 import Casing

from connectors import Phase

from ..journal import (
    CreateState,
    DeleteState,
    EventRecord,
    JobQuery,
    JobRecord,
    JournalError,
    JournalReader,
    JournalSummary,
    current_revision,
    head_revision,
    is_unfinished,
    phase_is_final,
    safe_url,
    upgrade,
)
from ._errors import EXIT_NOT_FOUND, EXIT_USAGE, UserError, report
from ._settings import add_debug_argument, add_journal_argument

__all__ = ["add_journal_commands", "journal_command", "parse_age", "parse_phase"]

#: Characters of a message shown in a table row.
MESSAGE_WIDTH = 60
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


# -- arguments -----------------------------------------------------------------------------


def parse_age(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``7d``, ``1w``, ``1h30m``: seconds."""
    value = text.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _AGE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise argparse.ArgumentTypeError(f"not an age like 90s, 10m, 2h, 7d or 1h30m: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_phase(text: str) -> int:
    """A phase name (``running``, ``RETRYABLE_FAILED``) or number."""
    value = text.strip().upper()
    if value.isdigit():
        return int(value)
    for phase in Phase:
        if phase.name == value:
            return int(phase)
    names = ", ".join(p.name or "" for p in Phase)
    raise argparse.ArgumentTypeError(f"not a phase ({names}): {text!r}")


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {value}")
        return value

    return parse


def _add_journal(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None) -> None:
    add_journal_argument(parser, environ)
    add_debug_argument(parser, environ)


def add_journal_commands(
    journal_parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """The subcommands of ``journal``, each with ``--journal`` (env SUPERVISOR_JOURNAL)."""
    commands = journal_parser.add_subparsers(
        dest="journal_command", required=True, metavar="COMMAND"
    )
    ls = commands.add_parser("ls", help="list jobs, newest first", description=_LS)
    _add_journal(ls, environ)
    ls.add_argument(
        "--phase", type=parse_phase, help="only jobs in this phase (RUNNING, FAILED, ...)"
    )
    ls.add_argument(
        "--connector", metavar="NAME", help="only jobs of this connector (its name, in any case)"
    )
    ls.add_argument("--task-type", metavar="TYPE", help="only jobs of this task type")
    ls.add_argument(
        "--older-than",
        type=parse_age,
        metavar="AGE",
        help="only jobs created more than AGE ago (90s, 10m, 2h, 7d, 1h30m)",
    )
    ls.add_argument(
        "--live",
        action="store_true",
        help="only jobs the supervisor still owes work (running, creating or cancelling)",
    )
    ls.add_argument(
        "--limit",
        type=_count(1),
        default=50,
        metavar="N",
        help="at most this many (default %(default)s)",
    )
    ls.add_argument(
        "--offset",
        type=_count(0),
        default=0,
        metavar="N",
        help="skip this many first, for paging (default %(default)s)",
    )
    _add_json(ls)

    show = commands.add_parser("show", help="one job and its whole history", description=_SHOW)
    _add_journal(show, environ)
    show.add_argument("job", nargs="?", metavar="JOB", help="job id, or a unique prefix of one")
    show.add_argument(
        "--resource-meta",
        metavar="META",
        help="find the job by the resource_meta a caller holds: its text (JSON), or "
        "base64:DATA for bytes that are not text; needs --task-type",
    )
    show.add_argument("--task-type", metavar="TYPE", help="task type of --resource-meta")
    show.add_argument(
        "--task-type-version",
        type=int,
        default=0,
        metavar="N",
        help="task type version of --resource-meta (default %(default)s)",
    )
    _add_json(show)

    stats = commands.add_parser(
        "stats",
        help="counts by connector, phase and owner, oldest live job, pending work",
        description="Count jobs by connector and phase, and by owner (replica); show the "
        "oldest live job, the creates and deletes under way, and when the journal was last "
        "written. Read-only.",
    )
    _add_journal(stats, environ)
    _add_json(stats)

    web = commands.add_parser(
        "web",
        help="browse the journal in a web browser (read-only)",
        description="Serve a read-only view of the journal over HTTP: the job list with the "
        "filters of `ls`, each job's history, log links and outputs, live counts. Safe "
        "against a running server.",
    )
    _add_journal(web, environ)
    web.add_argument("--host", default="127.0.0.1", help="address (default %(default)s)")
    web.add_argument(
        "--port",
        type=_count(0),
        default=8080,
        metavar="PORT",
        help="port; 0 picks a free one (default %(default)s)",
    )

    for name, text in (
        ("upgrade", "create or upgrade the journal schema to the latest revision"),
        ("revision", "print the journal's schema revision and the latest one"),
    ):
        description = text[0].upper() + text[1:] + "."
        _add_journal(commands.add_parser(name, help=text, description=description), environ)


_LS = (
    "List jobs, newest first, filtered by phase, connector, task type and age. "
    "Read-only: safe against the journal of a running server."
)
_SHOW = (
    "Show one job and its whole event history. Name the job by its id (or a unique "
    "prefix), or by the resource_meta a caller (Propeller) holds."
)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


# -- commands ------------------------------------------------------------------------------


def journal_command(args: argparse.Namespace) -> int:
    """Run one journal command; a user's mistake is one line (``_errors``)."""
    try:
        return _COMMANDS[args.journal_command](args)
    except (JournalError, UserError) as exc:
        code = report(exc, debug=args.log_level == "DEBUG", journal=args.journal)
        if code is None:  # pragma: no cover - every JournalError is explained
            raise
        return code


def _ls(args: argparse.Namespace) -> int:
    now = time.time()
    with JournalReader.open(args.journal) as reader:
        query = JobQuery(
            phase=args.phase,
            task_type=args.task_type,
            connector=args.connector,
            older_than=now - args.older_than if args.older_than is not None else None,
            unfinished=args.live,
            limit=args.limit,
            offset=args.offset,
        )
        records = reader.list_jobs(query)
    if args.json:
        _print_json([job_json(record) for record in records])
        return 0
    rows = [
        [
            r.job_id,
            f"{r.task_type} v{r.task_type_version}",
            _phase(r.phase),
            state_of(r),
            r.owner or "-",
            _age(now - r.created_at),
            _age(now - r.updated_at),
            _short(r.message),
        ]
        for r in records
    ]
    header = ["JOB", "TASK TYPE", "PHASE", "STATE", "OWNER", "AGE", "UPDATED", "MESSAGE"]
    _print_table(header, rows)
    if not records:
        print("no jobs" + (" at this offset" if args.offset else ""))
    elif len(records) == args.limit:
        print(f"(more may follow: --offset {args.offset + args.limit})")
    return 0


def _show(args: argparse.Namespace) -> int:
    if (args.job is None) == (args.resource_meta is None):
        print("error: name the job by JOB or by --resource-meta", file=sys.stderr)
        return EXIT_USAGE
    if args.resource_meta is not None and not args.task_type:
        print("error: --resource-meta needs --task-type", file=sys.stderr)
        return EXIT_USAGE
    with JournalReader.open(args.journal) as reader:
        if args.job is not None:
            record = reader.resolve(args.job)
            what = f"job {args.job}"
        else:
            record = _find_by_meta(reader, args.task_type, args.task_type_version, args)
            what = f"{args.task_type} v{args.task_type_version} job with that resource_meta"
        if record is None:
            print(f"error: no {what} in the journal", file=sys.stderr)
            return EXIT_NOT_FOUND
        history = reader.events(record.job_id)
    if args.json:
        _print_json(
            {
                "job": job_json(record),
                "request": request_summary(record.create_request),
                "events": [event_json(e) for e in history],
            }
        )
        return 0
    _print_job(record, history)
    return 0


def _find_by_meta(
    reader: JournalReader, task_type: str, version: int, args: argparse.Namespace
) -> JobRecord | None:
    for candidate in meta_candidates(args.resource_meta):
        found = reader.find_by_meta(task_type, version, candidate)
        if found is not None:
            return found
    return None


def meta_candidates(text: str) -> list[bytes]:
    """The bytes ``text`` may stand for: as given, and re-encoded as connectors encode JSON."""
    if text.startswith("base64:"):
        try:
            return [base64.b64decode(text.removeprefix("base64:"), validate=True)]
        except binascii.Error as exc:
            raise JournalError(f"--resource-meta: bad base64: {exc}") from None
    candidates = [text.encode()]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return candidates
    for encoded in (
        json.dumps(value, sort_keys=True, separators=(",", ":")),  # ResourceMeta.encode
        json.dumps(value, separators=(",", ":")),
        json.dumps(value, sort_keys=True),
        json.dumps(value),
    ):
        if encoded.encode() not in candidates:
            candidates.append(encoded.encode())
    return candidates


def _stats(args: argparse.Namespace) -> int:
    with JournalReader.open(args.journal) as reader:
        summary = reader.summary()
    if args.json:
        _print_json(summary_json(summary))
        return 0
    _print_summary(summary, safe_url(args.journal), time.time())
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    upgrade(args.journal)
    print(f"journal {safe_url(args.journal)} is at revision {current_revision(args.journal)}")
    return 0


def _revision(args: argparse.Namespace) -> int:
    current = current_revision(args.journal)
    print(f"current {current or '(empty)'}; head {head_revision()}")
    return 0


def _web(args: argparse.Namespace) -> int:
    from ._web import serve_web  # the HTTP server only for this command

    return serve_web(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ls": _ls,
    "show": _show,
    "stats": _stats,
    "web": _web,
    "upgrade": _upgrade,
    "revision": _revision,
}


# -- JSON ----------------------------------------------------------------------------------


def state_of(record: JobRecord) -> str:
    """What the supervisor is doing with the job, in a word or two."""
    if record.create_state == CreateState.PENDING:
        return "creating"
    if record.delete_state == DeleteState.REQUESTED:
        return "cancelling"
    if record.delete_state == DeleteState.DONE:
        return "cancelled"
    if record.create_state == CreateState.FAILED:
        return "create failed"
    if record.create_state == CreateState.ABANDONED:
        return "abandoned"
    return "done" if phase_is_final(record) else "live"


def job_json(record: JobRecord) -> dict[str, Any]:
    """A job as JSON: plain values; ``resource_meta`` as text (or ``base64:...``)."""
    return {
        "job_id": record.job_id,
        "task_type": record.task_type,
        "task_type_version": record.task_type_version,
        "connector": record.connector,
        "attempt": record.attempt,
        "phase": _phase(record.phase),
        "state": state_of(record),
        "live": is_unfinished(record),
        "create_state": record.create_state.value,
        "delete_state": record.delete_state.value,
        "owner": record.owner,  # the replica whose actor runs it; None: nobody's (released)
        "epoch": record.epoch,
        "message": record.message,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "deadline": record.deadline,
        "resource_meta": meta_text(record.resource_meta),
        "log_links": [_snake_keys(link) for link in json.loads(record.log_links)],
        "custom_info": json.loads(record.custom_info) if record.custom_info else None,
        "outputs": _output_names(record.outputs),
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "kind": event.kind,
        "phase": _phase(event.phase),
        "detail": _loads(event.detail),
    }


def summary_json(summary: JournalSummary) -> dict[str, Any]:
    oldest = summary.oldest_live
    return {
        "revision": summary.revision,
        "jobs": summary.jobs,
        "live": summary.live,
        "pending_creates": summary.pending_creates,
        "pending_deletes": summary.pending_deletes,
        "last_write": summary.last_write,
        "oldest_live": job_json(oldest) if oldest is not None else None,
        "counts": [
            {"connector": c.connector, "phase": _phase(c.phase), "jobs": c.jobs, "live": c.live}
            for c in summary.counts
        ],
        "owners": [{"owner": o.owner, "jobs": o.jobs, "live": o.live} for o in summary.owners],
    }


def request_summary(create_request: bytes | None) -> dict[str, Any] | None:
    """What the journalled CreateTaskRequest says, by name only: no values of inputs,
    secrets, configs or environment variables."""
    if not create_request:
        return None
    from flyteproto.flyteidl2 import connector as pb

    request = pb.CreateTaskRequest.parse(create_request)
    metadata = request.task_execution_metadata
    connection = request.connection
    execution = metadata.task_execution_id if metadata is not None else None
    return {
        "output_prefix": request.output_prefix,
        "inputs": sorted(lit.name for lit in request.inputs.literals) if request.inputs else [],
        "task_execution_id": (
            execution.to_dict(casing=Casing.SNAKE) if execution is not None else None
        ),
        "namespace": metadata.namespace if metadata is not None else "",
        "environment_variables": sorted(metadata.environment_variables) if metadata else [],
        "secrets": sorted(connection.secrets) if connection is not None else [],
        "configs": sorted(connection.configs) if connection is not None else [],
    }


def meta_text(meta: bytes | None) -> str | None:
    if meta is None:
        return None
    try:
        return meta.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(meta).decode()


def _output_names(outputs: bytes | None) -> list[str] | None:
    if outputs is None:
        return None
    from flyteproto.flyteidl2.task import Outputs

    return [literal.name for literal in Outputs.parse(outputs).literals]


def _snake_keys(value: Any) -> Any:
    """Protobuf JSON (``showWhilePending``) with the snake_case keys of the rest of our JSON."""
    if isinstance(value, dict):
        return {_SNAKE.sub(r"_\1", k).lower(): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(item) for item in value]
    return value


_SNAKE = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# -- tables --------------------------------------------------------------------------------


def _phase(phase: int) -> str:
    try:
        return Phase(phase).name or str(phase)
    except ValueError:
        return str(phase)


def _age(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))
    delta = now - at
    return f"{stamp} ({_age(delta)} ago)" if delta >= 0 else f"{stamp} (in {_age(-delta)})"


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def _short(text: str, width: int = MESSAGE_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


def _print_job(record: JobRecord, history: Sequence[EventRecord]) -> None:
    now = time.time()
    request = request_summary(record.create_request)
    links = json.loads(record.log_links)
    fields: list[tuple[str, str]] = [
        ("job", record.job_id),
        ("task type", f"{record.task_type} v{record.task_type_version}"),
        ("connector", record.connector),
        ("attempt", str(record.attempt)),
        ("phase", f"{_phase(record.phase)} ({state_of(record)})"),
        ("message", " ".join(record.message.split()) or "-"),
        ("created", _when(record.created_at, now)),
        ("updated", _when(record.updated_at, now)),
        ("finished", _when(record.finished_at, now)),
        ("deadline", _when(record.deadline, now)),
        ("resource_meta", meta_text(record.resource_meta) or "-"),
    ]
    fields += [("log link", f"{link.get('name', '')} {link.get('uri', '')}") for link in links]
    outputs = _output_names(record.outputs)
    if outputs is not None:
        fields.append(("outputs", ", ".join(outputs) or "(none)"))
    if request is not None:
        fields.append(("output prefix", request["output_prefix"] or "-"))
        fields.append(("inputs", ", ".join(request["inputs"]) or "(none)"))
        if request["secrets"] or request["configs"]:
            keys = ", ".join([*request["secrets"], *request["configs"]])
            fields.append(("connection", f"{keys} (names only: values are never kept)"))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name.ljust(width)}  {value}")
    print()
    rows = [[str(e.seq), _stamp(e.at), e.kind, _phase(e.phase), _detail(e.detail)] for e in history]
    _print_table(["SEQ", "AT", "EVENT", "PHASE", "DETAIL"], rows)


def _detail(text: str) -> str:
    value = _loads(text)
    if value == {}:
        return ""
    if isinstance(value, dict):
        return _short(", ".join(f"{k}={v}" for k, v in value.items()), 80)
    return _short(str(value), 80)


def _print_summary(summary: JournalSummary, url: str, now: float) -> None:
    oldest = summary.oldest_live
    lines = [
        ("journal", f"{url} (revision {summary.revision})"),
        ("jobs", f"{summary.jobs} ({summary.live} live)"),
        (
            "oldest live",
            f"{oldest.job_id} {oldest.connector} {_phase(oldest.phase)}, "
            f"created {_age(now - oldest.created_at)} ago: {_short(oldest.message, 50) or '-'}"
            if oldest is not None
            else "-",
        ),
        ("pending", f"{summary.pending_creates} create(s), {summary.pending_deletes} delete(s)"),
        ("last write", _when(summary.last_write, now)),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name.ljust(width)}  {value}")
    if summary.counts:
        print()
        rows = [[c.connector, _phase(c.phase), str(c.jobs), str(c.live)] for c in summary.counts]
        _print_table(["CONNECTOR", "PHASE", "JOBS", "LIVE"], rows)
    if summary.owners:
        print()
        owners = [[o.owner or "(none)", str(o.jobs), str(o.live)] for o in summary.owners]
        _print_table(["OWNER", "JOBS", "LIVE"], owners)
