"""``python -m supervisor journal ls|show|stats|upgrade|revision``: the journal for operators.

``ls``, ``show`` and ``stats`` only read (``JournalReader``: SQLite ``mode=ro``, PostgreSQL
read-only sessions), so they are safe against the journal of a running server and never
hold up its writes. Tables for people, ``--json`` for scripts. Nothing secret is printed:
the journal holds none, and of the journalled request only names are shown (secret and
config keys, environment variable names), never values.

Exit codes: 0 done, 1 no such job, 2 bad arguments or journal URL, 3 journal error. A
closed pipe (``journal ls | head``) ends the output quietly (``cli._main``). The JSON and
words of records are ``_journal_json``'s (shared with ``journal web``, ``_web``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..journal import (
    EventRecord,
    JobQuery,
    JobRecord,
    JournalError,
    JournalReader,
    JournalSummary,
    current_revision,
    head_revision,
    safe_url,
    upgrade,
)
from ._errors import EXIT_NOT_FOUND, EXIT_USAGE, UserError, report
from ._journal_json import (
    age_text,
    event_json,
    job_json,
    loads_or_text,
    meta_text,
    output_names,
    parse_age,
    parse_phase,
    phase_name,
    request_summary,
    state_of,
    summary_json,
)
from ._settings import add_debug_argument, add_journal_argument
from ._web import serve_web

__all__ = ["add_journal_commands", "journal_command", "meta_candidates"]

#: Characters of a message shown in a table row.
MESSAGE_WIDTH = 60


# -- arguments -----------------------------------------------------------------------------


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
            phase_name(r.phase),
            state_of(r),
            r.owner or "-",
            age_text(now - r.created_at),
            age_text(now - r.updated_at),
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


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ls": _ls,
    "show": _show,
    "stats": _stats,
    "web": serve_web,
    "upgrade": _upgrade,
    "revision": _revision,
}


# -- output (the values themselves: _journal_json) -----------------------------------------


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))
    delta = now - at
    return f"{stamp} ({age_text(delta)} ago)" if delta >= 0 else f"{stamp} (in {age_text(-delta)})"


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
        ("phase", f"{phase_name(record.phase)} ({state_of(record)})"),
        ("message", " ".join(record.message.split()) or "-"),
        ("created", _when(record.created_at, now)),
        ("updated", _when(record.updated_at, now)),
        ("finished", _when(record.finished_at, now)),
        ("deadline", _when(record.deadline, now)),
        ("resource_meta", meta_text(record.resource_meta) or "-"),
    ]
    fields += [("log link", f"{link.get('name', '')} {link.get('uri', '')}") for link in links]
    outputs = output_names(record.outputs)
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
    rows = [
        [str(e.seq), _stamp(e.at), e.kind, phase_name(e.phase), _detail(e.detail)] for e in history
    ]
    _print_table(["SEQ", "AT", "EVENT", "PHASE", "DETAIL"], rows)


def _detail(text: str) -> str:
    value = loads_or_text(text)
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
            f"{oldest.job_id} {oldest.connector} {phase_name(oldest.phase)}, "
            f"created {age_text(now - oldest.created_at)} ago: {_short(oldest.message, 50) or '-'}"
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
        rows = [
            [c.connector, phase_name(c.phase), str(c.jobs), str(c.live)] for c in summary.counts
        ]
        _print_table(["CONNECTOR", "PHASE", "JOBS", "LIVE"], rows)
    if summary.owners:
        print()
        owners = [[o.owner or "(none)", str(o.jobs), str(o.live)] for o in summary.owners]
        _print_table(["OWNER", "JOBS", "LIVE"], owners)
