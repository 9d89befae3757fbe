"""A thin HTTP proxy in front of bqemulator that adds what real BigQuery does and it lacks.

bqemulator runs a query inside ``jobs.insert`` and answers DONE: a job is never seen
RUNNING, so cancelling one is a no-op, and it accepts a job id twice where BigQuery answers
409 Conflict. The proxy speaks BigQuery's REST protocol to the client and adds:

- **RUNNING**: a query containing ``/*sleep=S*/`` is held by the proxy for S seconds: the
  insert, ``jobs.get`` and ``getQueryResults`` answer RUNNING meanwhile; the first of them
  after S seconds passes the insert on to the emulator, which then answers everything.
- **cancel**: ``jobs.cancel`` of a held job ends it as BigQuery does: DONE with the error
  reason ``stopped``; it never reaches the emulator.
- **409 Conflict** on an insert with a job id that was inserted before.
- **destination**: ``jobs.get`` reports the ``destinationTable`` the insert asked for (the
  emulator ignores it and reports an anonymous table).
- **OAuth**: ``POST /token`` hands out access tokens, so a service-account key whose
  ``token_uri`` points here works; ``authorizations`` records the Authorization headers.

Everything else passes through unchanged. For the tests: ``inserted`` holds the body of
every job insert that was accepted (by job id), ``insert_attempts`` counts inserts per job
id (accepted or not), ``lose_next_insert_response()`` lets the next insert reach the emulator
but answers 503, as when a response is lost on the way back, and ``fail_next_insert()``
answers the next insert with an error of your choice.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["BigQueryProxy"]

_JOBS = re.compile(r"^/bigquery/v2/projects/(?P<project>[^/]+)/jobs$")
_JOB = re.compile(
    r"^/bigquery/v2/projects/(?P<project>[^/]+)/(?P<kind>jobs|queries)/(?P<job>[^/]+)$"
)
_CANCEL = re.compile(r"^/bigquery/v2/projects/(?P<project>[^/]+)/jobs/(?P<job>[^/]+)/cancel$")
_SLEEP = re.compile(r"/\*\s*sleep=(?P<seconds>[0-9.]+)\s*\*/")
#: Seconds the proxy waits for the emulator to answer one request.
UPSTREAM_TIMEOUT = 30.0
#: How often the server loop looks for a shutdown request (the time closing may take).
SHUTDOWN_POLL = 0.02

JSON = dict[str, Any]
#: What BigQuery reports for a job cancelled while it ran.
_CANCELLED = {
    "reason": "stopped",
    "message": "Job execution was cancelled: User requested cancellation",
}


@dataclass
class _Held:
    """A query job the proxy keeps RUNNING until ``release_at`` (monotonic seconds)."""

    body: JSON
    release_at: float
    created_ms: float = field(default_factory=lambda: time.time() * 1000)
    cancelled: bool = False


class BigQueryProxy:
    """The proxy, listening on 127.0.0.1 (a free port) in front of ``upstream`` (a URL)."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.inserted: dict[str, JSON] = {}
        self.insert_attempts: Counter[str] = Counter()
        self.authorizations: list[str] = []
        self._held: dict[str, _Held] = {}
        self._destinations: dict[str, JSON] = {}
        self._lose_next_insert = False
        self._fail_next_insert: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL,), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def lose_next_insert_response(self) -> None:
        """The next job insert reaches the emulator, but the client gets a 503."""
        with self._lock:
            self._lose_next_insert = True

    def fail_next_insert(self, status: int, reason: str) -> None:
        """Answer the next job insert with this error; it never reaches the emulator."""
        with self._lock:
            self._fail_next_insert = (status, reason)

    def held_job_ids(self) -> set[str]:
        """Jobs the proxy still holds (RUNNING, or cancelled while it held them)."""
        with self._lock:
            return set(self._held)

    # Requests ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        """Answer one request: ``(status, JSON body)``."""
        if method == "POST" and path == "/token":
            return _ok({"access_token": "proxy-token", "token_type": "Bearer", "expires_in": 3600})
        if method == "POST" and (found := _JOBS.match(path)):
            return self._insert(found["project"], path, query, body)
        if method == "GET" and (found := _JOB.match(path)):
            return self._get(found["project"], found["kind"], found["job"], path, query)
        if method == "POST" and (found := _CANCEL.match(path)):
            return self._cancel(found["project"], found["job"], path, query)
        return self._forward(method, path, query, body)

    def _insert(self, project: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        job: JSON = json.loads(body)
        job_id = str(job.get("jobReference", {}).get("jobId", ""))
        sql = str(job.get("configuration", {}).get("query", {}).get("query", ""))
        with self._lock:
            self.insert_attempts[job_id] += 1
            if job_id in self.inserted:
                return _conflict(project, job_id)
            failure, self._fail_next_insert = self._fail_next_insert, None
            if failure is not None:
                return _error(*failure, message=f"injected by the proxy: {failure[1]}")
            lose, self._lose_next_insert = self._lose_next_insert, False
            # Taken now, so that a concurrent insert of the same id meets 409 too.
            self.inserted[job_id] = job
            destination = job.get("configuration", {}).get("query", {}).get("destinationTable")
            if destination:
                self._destinations[job_id] = destination
            sleep = _SLEEP.search(sql)
            if sleep is not None:
                self._held[job_id] = _Held(job, time.monotonic() + float(sleep["seconds"]))
                return _lost() if lose else _ok(self._held_resource(project, job_id))
        status, answer = self._forward("POST", path, query, body)
        if status != 200:
            with self._lock:
                del self.inserted[job_id]
                self._destinations.pop(job_id, None)
        if lose:
            return _lost()
        return status, self._with_destination(job_id, answer)

    def _get(
        self, project: str, kind: str, job_id: str, path: str, query: str
    ) -> tuple[int, bytes]:
        self._release_if_due(project, job_id)
        with self._lock:
            held = self._held.get(job_id)
            if held is not None and kind == "queries":
                reference = self._held_resource(project, job_id)["jobReference"]
                return _ok(
                    {
                        "kind": "bigquery#getQueryResultsResponse",
                        "jobReference": reference,
                        "jobComplete": False,
                    }
                )
            if held is not None:
                return _ok(self._held_resource(project, job_id))
        status, answer = self._forward("GET", path, query, b"")
        return status, self._with_destination(job_id, answer) if kind == "jobs" else answer

    def _cancel(self, project: str, job_id: str, path: str, query: str) -> tuple[int, bytes]:
        self._release_if_due(project, job_id)
        with self._lock:
            held = self._held.get(job_id)
            if held is not None:
                held.cancelled = True
                job = self._held_resource(project, job_id)
                return _ok({"kind": "bigquery#jobCancelResponse", "job": job})
        return self._forward("POST", path, query, b"")

    def _release_if_due(self, project: str, job_id: str) -> None:
        """Pass a held job's insert on to the emulator once its sleep is over."""
        with self._lock:
            held = self._held.get(job_id)
            if held is None or held.cancelled or time.monotonic() < held.release_at:
                return
            del self._held[job_id]
        path = f"/bigquery/v2/projects/{project}/jobs"
        self._forward("POST", path, "", json.dumps(held.body).encode())

    def _held_resource(self, project: str, job_id: str) -> JSON:
        """A held job as BigQuery shows one: RUNNING, or DONE/stopped once cancelled."""
        held = self._held[job_id]
        location = held.body.get("jobReference", {}).get("location") or "US"
        reference = {"projectId": project, "jobId": job_id, "location": location}
        status: JSON = {"state": "RUNNING"}
        if held.cancelled:
            status = {"state": "DONE", "errorResult": _CANCELLED, "errors": [_CANCELLED]}
        return {
            "kind": "bigquery#job",
            "id": f"{project}:{location}.{job_id}",
            "jobReference": reference,
            "configuration": held.body.get("configuration", {}),
            "status": status,
            "statistics": {"creationTime": held.created_ms, "startTime": held.created_ms},
        }

    def _with_destination(self, job_id: str, answer: bytes) -> bytes:
        """Report the destination table the insert asked for, as BigQuery does."""
        destination = self._destinations.get(job_id)
        if destination is None:
            return answer
        job: JSON = json.loads(answer)
        query = job.setdefault("configuration", {}).setdefault("query", {})
        query["destinationTable"] = destination
        return json.dumps(job).encode()

    def _forward(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            target = f"{path}?{query}" if query else path
            headers = {"Content-Type": "application/json"} if body else {}
            connection.request(method, target, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def _ok(value: JSON) -> tuple[int, bytes]:
    return 200, json.dumps(value).encode()


def _lost() -> tuple[int, bytes]:
    return _error(503, "backendError", message="the proxy lost this response")


def _conflict(project: str, job_id: str) -> tuple[int, bytes]:
    return _error(409, "duplicate", message=f"Already Exists: Job {project}:US.{job_id}")


def _error(status: int, reason: str, *, message: str) -> tuple[int, bytes]:
    """An error as BigQuery's REST API sends one."""
    detail = {"message": message, "domain": "global", "reason": reason}
    error = {"code": status, "message": message, "errors": [detail]}
    return status, json.dumps({"error": error}).encode()


def _handler_for(proxy: BigQueryProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_PATCH(self) -> None:
            self._answer("PATCH")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            authorization = self.headers.get("Authorization")
            if authorization:
                with proxy._lock:
                    proxy.authorizations.append(authorization)
            path, _, query = self.path.partition("?")
            status, answer = proxy.handle(method, path, query, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read the proxy's records, not its log."""

    return Handler
