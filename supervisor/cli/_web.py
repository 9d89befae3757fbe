"""``python -m supervisor journal web``: the journal, read-only, in a browser.

Server-rendered HTML from the standard library's HTTP server: no JavaScript, no build
step. Two pages: ``/`` lists jobs with the filters of ``journal ls`` (as query parameters)
under the live counts of ``journal stats``; ``/job/ID`` shows one job, its log links, output
names and history. It reads through ``JournalReader`` (read-only: safe against a running
server) and answers GET and HEAD only: there is no write path. Every value from the
journal is HTML-escaped; log links become links only for http(s) URLs. ``serve --ui``
serves the same pages on the metrics port (``pages_for``).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..journal import (
    EventRecord,
    JobQuery,
    JobRecord,
    JournalError,
    JournalReader,
    JournalSummary,
    safe_url,
)
from ._errors import EXIT_PORT, UserError, port_message
from ._journal_json import (
    age_text,
    event_json,
    job_json,
    parse_age,
    parse_phase,
    phase_name,
    request_summary,
    state_of,
)

__all__ = ["pages_for", "render", "serve_web"]

#: No scripts, no frames, nothing loaded from elsewhere: the page is its own HTML and style.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
#: Jobs on one page of the list.
PAGE = 50
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h1 a{color:inherit;text-decoration:none}
table{border-collapse:collapse;margin:.8em 0}td,th{padding:.25em .7em;text-align:left;
border-bottom:1px solid #ddd;vertical-align:top}th{background:#f4f4f4}
.mono{font-family:ui-monospace,monospace}.counts td{text-align:right}
form label{margin-right:.8em}.live{color:#075}.done{color:#555}.failed{color:#a00}
"""


def serve_web(args: argparse.Namespace) -> int:
    """Serve the pages until Ctrl-C or SIGTERM.

    Errors: JournalError (a journal it cannot read), UserError (a port in use).
    """
    with JournalReader.open(args.journal) as reader:
        try:
            server = ThreadingHTTPServer((args.host, args.port), _handler(reader, args.journal))
        except OSError as exc:
            message = port_message("the web view", args.host, args.port, exc)
            raise UserError(message, EXIT_PORT) from exc
        host, port = args.host, int(server.server_address[1])
        print(f"journal {safe_url(args.journal)}: web view on http://{host}:{port}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def _handler(reader: JournalReader, url: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            status, body = render(reader, safe_url(url), self.path)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", _POLICY)
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def pages_for(url: str) -> Callable[[str], tuple[int, str]]:
    """The pages of the journal at ``url`` for ``serve --ui``: each request opens the
    journal read-only (the server may still be creating it), renders, and closes it."""

    def page(path: str) -> tuple[int, str]:
        try:
            with JournalReader.open(url) as reader:
                return render(reader, safe_url(url), path)
        except JournalError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, _page("journal error", f"<p>{_e(str(exc))}</p>")

    return page


def render(reader: JournalReader, url: str, path: str) -> tuple[int, str]:
    """The status and HTML page for a request ``path`` (with its query)."""
    parts = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        if parts.path == "/":
            return HTTPStatus.OK, _list_page(reader, url, query)
        if parts.path.startswith("/job/"):
            job_id = urllib.parse.unquote(parts.path.removeprefix("/job/"))
            found = reader.resolve(job_id)
            if found is None:
                return HTTPStatus.NOT_FOUND, _page("no such job", f"<p>No job {_e(job_id)}.</p>")
            return HTTPStatus.OK, _job_page(found, reader.events(found.job_id))
    except (ValueError, argparse.ArgumentTypeError) as exc:
        return HTTPStatus.BAD_REQUEST, _page("bad request", f"<p>{_e(str(exc))}</p>")
    except JournalError as exc:
        return HTTPStatus.SERVICE_UNAVAILABLE, _page("journal error", f"<p>{_e(str(exc))}</p>")
    return HTTPStatus.NOT_FOUND, _page("not found", "<p>Nothing here.</p>")


# -- pages ---------------------------------------------------------------------------------


def _list_page(reader: JournalReader, url: str, query: Mapping[str, str]) -> str:
    now = time.time()
    offset = int(query.get("offset") or 0)
    older = query.get("older_than") or None
    records = reader.list_jobs(
        JobQuery(
            phase=parse_phase(query["phase"]) if query.get("phase") else None,
            connector=query.get("connector") or None,
            task_type=query.get("task_type") or None,
            older_than=now - parse_age(older) if older else None,
            unfinished=query.get("live") == "1",
            limit=PAGE,
            offset=max(0, offset),
        )
    )
    summary = reader.summary()
    rows = [
        [
            f'<a class="mono" href="/job/{_q(r.job_id)}">{_e(r.job_id[:12])}</a>',
            _e(r.connector),
            _e(f"{r.task_type} v{r.task_type_version}"),
            f'<span class="{_css(r)}">{_e(job_json(r)["phase"])}</span>',
            _e(state_of(r)),
            _e(age_text(now - r.created_at)),
            _e(" ".join(r.message.split())[:100]),
        ]
        for r in records
    ]
    body = [_counts(summary, url), _filters(query)]
    body.append(
        _table(["job", "connector", "task type", "phase", "state", "age", "message"], rows)
        if rows
        else "<p>No jobs match.</p>"
    )
    if len(records) == PAGE:
        more = {**query, "offset": str(offset + PAGE)}
        body.append(f'<p><a href="/?{_e(urllib.parse.urlencode(more))}">more</a></p>')
    return _page("jobs", "".join(body))


def _counts(summary: JournalSummary, url: str) -> str:
    rows = [
        [_e(c.connector), _e(phase_name(c.phase)), str(c.jobs), str(c.live)] for c in summary.counts
    ]
    head = (
        f"<p>{_e(url)} · {summary.jobs} jobs, <b>{summary.live} live</b> · "
        f"{summary.pending_creates} create(s) and {summary.pending_deletes} delete(s) pending</p>"
    )
    return head + (
        '<table class="counts">' + _rows(["connector", "phase", "jobs", "live"], rows) + "</table>"
        if rows
        else ""
    )


def _filters(query: Mapping[str, str]) -> str:
    def field(name: str, label: str, placeholder: str) -> str:
        value = _e(query.get(name, ""))
        return (
            f'<label>{label} <input name="{name}" value="{value}" '
            f'placeholder="{placeholder}"></label>'
        )

    live = " checked" if query.get("live") == "1" else ""
    return (
        '<form method="get" action="/">'
        + field("phase", "phase", "RUNNING")
        + field("connector", "connector", "any case")
        + field("task_type", "task type", "bigquery_query_job_task")
        + field("older_than", "older than", "2h")
        + f'<label><input type="checkbox" name="live" value="1"{live}> live only</label>'
        + '<button type="submit">filter</button></form>'
    )


def _job_page(record: JobRecord, history: Sequence[EventRecord]) -> str:
    job = job_json(record)
    request = request_summary(record.create_request) or {}
    fields = [
        ("job", f'<span class="mono">{_e(record.job_id)}</span>'),
        ("connector", _e(record.connector)),
        ("task type", _e(f"{record.task_type} v{record.task_type_version}")),
        ("phase", f'<span class="{_css(record)}">{_e(job["phase"])}</span> ({_e(job["state"])})'),
        ("message", _e(record.message) or "-"),
        ("created", _e(_stamp(record.created_at))),
        ("updated", _e(_stamp(record.updated_at))),
        ("finished", _e(_stamp(record.finished_at)) if record.finished_at else "-"),
        ("resource_meta", f'<span class="mono">{_e(job["resource_meta"] or "-")}</span>'),
        ("outputs", _e(", ".join(job["outputs"] or [])) if job["outputs"] is not None else "-"),
        ("inputs", _e(", ".join(request.get("inputs", []))) or "-"),
        ("output prefix", _e(request.get("output_prefix", "")) or "-"),
    ]
    fields += [("log link", _link(link)) for link in job["log_links"]]
    table = "<table>" + "".join(f"<tr><th>{n}</th><td>{v}</td></tr>" for n, v in fields)
    events = [event_json(e) for e in history]
    rows = [
        [str(e["seq"]), _e(_stamp(e["at"])), _e(e["kind"]), _e(e["phase"]), _e(_detail(e))]
        for e in events
    ]
    return _page(
        f"job {record.job_id[:12]}",
        table + "</table><h2>History</h2>" + _table(["#", "at", "event", "phase", "detail"], rows),
    )


# -- pieces --------------------------------------------------------------------------------


def _link(link: Mapping[str, Any]) -> str:
    name, uri = str(link.get("name", "")), str(link.get("uri", ""))
    if urllib.parse.urlsplit(uri).scheme in ("http", "https"):
        return f'{_e(name)} <a href="{_e(uri)}" rel="noreferrer">{_e(uri)}</a>'
    return f"{_e(name)} {_e(uri)}"


def _detail(event: Mapping[str, Any]) -> str:
    detail = event["detail"]
    if isinstance(detail, dict):
        return ", ".join(f"{k}={v}" for k, v in detail.items())
    return json.dumps(detail)


def _css(record: JobRecord) -> str:
    state = state_of(record)
    if state in ("live", "creating", "cancelling"):
        return "live"
    return "failed" if "FAIL" in phase_name(record.phase) else "done"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "<table>" + _rows(header, rows) + "</table>"


def _rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"
    return head + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)} · connector supervisor</title><style>{_STYLE}</style></head>"
        f'<body><h1><a href="/">Connector supervisor journal</a> · {_e(title)}</h1>'
        f"{body}</body></html>"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _stamp(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))
