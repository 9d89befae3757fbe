"""A fake Databricks workspace: the Jobs API 2.1 run endpoints over real HTTP on 127.0.0.1.

It serves ``runs/submit``, ``runs/get`` and ``runs/cancel`` as documented, on Trio with h11
(keep-alive connections, as httpx uses them), in the test's own Trio run:

    fake = FakeDatabricks()
    url = await nursery.start(fake.serve)

What the real API does and the fake does too: bearer-token authentication (401 without a
token, 403 for a wrong one); ``{"error_code", "message"}`` error bodies; de-duplication by
``idempotency_token`` (a repeated token returns the first run; the token of a deleted run is
an error); 400 INVALID_PARAMETER_VALUE "Run N does not exist." for an unknown run (or 404
RESOURCE_DOES_NOT_EXIST with ``not_found_status = 404``); asynchronous cancel (TERMINATING,
then TERMINATED/CANCELED on ``finish_cancels``) that is a no-op for a run that has ended.

The test moves runs through their states (``set_state``) and injects faults:
``fail_next`` (an error answer, optionally with Retry-After, optionally after the request
took effect: a lost response), ``delay_next``/``hang_next`` (a slow or no answer) and
``lose`` (forget a run). ``requests`` records every request, ``calls`` counts them.

``databricks_template`` makes a task template as flyte-sdk's Databricks plugin writes it.
"""

from __future__ import annotations

import itertools
import json
import math
import ssl
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from flyteproto.flyteidl2.core import Container, Identifier, KeyValuePair, TaskTemplate
from flyteproto.google.protobuf import Struct

__all__ = [
    "ARGS",
    "JOBS_API",
    "FakeDatabricks",
    "FakeRun",
    "SeenRequest",
    "databricks_template",
]

JOBS_API = "/api/2.1/jobs"
_OPERATIONS = {
    ("POST", "runs/submit"): "submit",
    ("GET", "runs/get"): "get",
    ("POST", "runs/cancel"): "cancel",
}
_TERMINAL = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_TASK_FIELDS = (
    "tasks",
    "spark_python_task",
    "notebook_task",
    "spark_jar_task",
    "spark_submit_task",
    "python_wheel_task",
)
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden"}
_Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]


@dataclass
class FakeRun:
    """One run, as the fake keeps it."""

    run_id: int
    job_id: int
    request: dict[str, Any]
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    cancel_requests: int = 0

    def as_json(self, base_url: str, *, with_page_url: bool) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": self.life_cycle_state,
            "state_message": self.state_message,
            "user_cancelled_or_timedout": self.result_state == "CANCELED",
        }
        if self.result_state is not None:
            state["result_state"] = self.result_state
        run: dict[str, Any] = {
            "job_id": self.job_id,
            "run_id": self.run_id,
            "number_in_job": self.run_id,
            "run_name": self.request.get("run_name", "Untitled"),
            "run_type": "SUBMIT_RUN",
            "state": state,
        }
        if with_page_url:
            run["run_page_url"] = f"{base_url}/?o=0#job/{self.job_id}/run/{self.run_id}"
        return run


@dataclass
class SeenRequest:
    """One request as the fake received it (``status`` is set once it is answered)."""

    method: str
    endpoint: str
    authorization: str | None
    query: dict[str, str]
    body: bytes
    status: int | None = None


@dataclass(frozen=True)
class _Fault:
    status: int | None  # None: no error, only the delay
    delay: float = 0.0
    retry_after: str | None = None
    error_code: str = ""
    message: str = ""
    applied: bool = False


@dataclass
class FakeDatabricks:
    """A Databricks workspace in memory, behind a real HTTP server."""

    token: str = "dapi-fake-0123456789abcdef"
    #: How an unknown run is answered: 400 (as Databricks does) or 404.
    not_found_status: int = 400
    #: Whether runs/get includes ``run_page_url`` (the real API always does).
    with_page_url: bool = True
    url: str = ""
    runs: dict[int, FakeRun] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    _faults: dict[str, list[_Fault]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    # -- fault hooks and state -------------------------------------------------------------

    def fail_next(
        self,
        operation: str,
        status: int,
        *,
        retry_after: str | None = None,
        error_code: str | None = None,
        message: str = "injected failure",
        applied: bool = False,
    ) -> None:
        """Answer the next ``operation`` ("submit", "get", "cancel") with an error.

        ``applied``: the request takes effect first, and only its answer is the error (a
        response lost on the way back).
        """
        code = error_code or {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}.get(
            status, "INTERNAL_ERROR" if status >= 500 else "INVALID_PARAMETER_VALUE"
        )
        fault = _Fault(status, 0.0, retry_after, code, message, applied)
        self._faults.setdefault(operation, []).append(fault)

    def delay_next(self, operation: str, seconds: float) -> None:
        """Answer the next ``operation`` only after ``seconds`` (of real time)."""
        self._faults.setdefault(operation, []).append(_Fault(None, seconds))

    def hang_next(self, operation: str) -> None:
        """Never answer the next ``operation`` (until the server stops)."""
        self.delay_next(operation, math.inf)

    def lose(self, run_id: int) -> None:
        """Forget a run, as a workspace whose runs were deleted."""
        del self.runs[run_id]

    def set_state(
        self,
        run_id: int,
        life_cycle_state: str,
        result_state: str | None = None,
        state_message: str = "",
    ) -> None:
        run = self.runs[run_id]
        run.life_cycle_state = life_cycle_state
        run.result_state = result_state
        run.state_message = state_message

    def finish_cancels(self) -> None:
        """Runs that were asked to cancel (TERMINATING) end as TERMINATED/CANCELED."""
        for run in self.runs.values():
            if run.cancel_requests and run.life_cycle_state == "TERMINATING":
                self.set_state(run.run_id, "TERMINATED", "CANCELED", "Run cancelled.")

    def only_run(self) -> FakeRun:
        """The one run there is. Errors: AssertionError when there are none or several."""
        assert len(self.runs) == 1, self.runs
        return next(iter(self.runs.values()))

    # -- serving ---------------------------------------------------------------------------

    async def serve(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on a free port of 127.0.0.1; ``task_status.started`` gets the base URL.

        ``tls``: serve HTTPS with this server context (clients that only speak https, such
        as flyte-sdk's Databricks plugin).
        """
        tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if tls is not None:
            listeners = [trio.SSLListener(t, tls, https_compatible=True) for t in tcp]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        task_status.started(self.url)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    received = await _receive(connection, stream)
                    if received is None:
                        return
                    status, payload, headers = await self._answer(*received)
                    await _send(connection, stream, status, payload, headers)
                    if connection.our_state is not h11.DONE or (
                        connection.their_state is not h11.DONE
                    ):
                        return
                    connection.start_next_cycle()
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                return

    async def _answer(self, request: h11.Request, body: bytes) -> _Answer:
        method = request.method.decode()
        target = urllib.parse.urlsplit(request.target.decode())
        endpoint = target.path.removeprefix(JOBS_API + "/")
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(target.query).items()}
        seen = SeenRequest(method, endpoint, headers.get("authorization"), query, body)
        self.requests.append(seen)
        answer = await self._handle(method, endpoint, seen)
        seen.status = answer[0]
        return answer

    async def _handle(self, method: str, endpoint: str, seen: SeenRequest) -> _Answer:
        operation = _OPERATIONS.get((method, endpoint))
        if operation is None:
            return _error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {endpoint}'")
        self.calls[operation] += 1
        faults = self._faults.get(operation)
        fault = faults.pop(0) if faults else None
        if fault is not None and fault.delay:
            await trio.sleep(fault.delay)
        if fault is not None and fault.status is not None and not fault.applied:
            return _fault_answer(fault)
        if seen.authorization is None:
            return _error(401, "UNAUTHENTICATED", "Missing credentials")
        if seen.authorization != f"Bearer {self.token}":
            return _error(403, "PERMISSION_DENIED", "Invalid access token.")
        answer = self._operation(operation, seen)
        if fault is not None and fault.status is not None:
            return _fault_answer(fault)
        return answer

    def _operation(self, operation: str, seen: SeenRequest) -> _Answer:
        if operation == "get":
            return self._get(seen.query.get("run_id", ""))
        try:
            body = json.loads(seen.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
        return self._submit(body) if operation == "submit" else self._cancel(body)

    def _submit(self, body: dict[str, Any]) -> _Answer:
        token = body.get("idempotency_token")
        if token is not None:
            if not isinstance(token, str) or len(token) > 64:
                return _error(400, "INVALID_PARAMETER_VALUE", "idempotency_token is too long")
            if token in self.tokens:
                run_id = self.tokens[token]
                if run_id not in self.runs:
                    return _error(
                        400, "INVALID_PARAMETER_VALUE", f"Run {run_id} with this token was deleted"
                    )
                return 200, {"run_id": run_id}, []
        if not any(body.get(name) for name in _TASK_FIELDS):
            return _error(400, "INVALID_PARAMETER_VALUE", "A task must be specified")
        if "tasks" not in body and not (body.get("existing_cluster_id") or body.get("new_cluster")):
            return _error(400, "INVALID_PARAMETER_VALUE", "A cluster must be specified")
        run = FakeRun(run_id=next(self._ids), job_id=next(self._ids), request=body)
        self.runs[run.run_id] = run
        if token is not None:
            self.tokens[token] = run.run_id
        return 200, {"run_id": run.run_id}, []

    def _get(self, raw_id: str) -> _Answer:
        if not raw_id.isdigit():
            return _error(400, "INVALID_PARAMETER_VALUE", "run_id must be an integer")
        run = self.runs.get(int(raw_id))
        if run is None:
            return self._no_such_run(raw_id)
        return 200, run.as_json(self.url, with_page_url=self.with_page_url), []

    def _cancel(self, body: dict[str, Any]) -> _Answer:
        raw_id = str(body.get("run_id", ""))
        if not raw_id.isdigit():
            return _error(400, "INVALID_PARAMETER_VALUE", "run_id must be an integer")
        run = self.runs.get(int(raw_id))
        if run is None:
            return self._no_such_run(raw_id)
        run.cancel_requests += 1
        if run.life_cycle_state not in _TERMINAL:  # else: a no-op, as documented
            self.set_state(run.run_id, "TERMINATING", None, "Run cancellation requested.")
        return 200, {}, []

    def _no_such_run(self, raw_id: str) -> _Answer:
        if self.not_found_status == 404:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Run {raw_id} does not exist.")
        return _error(400, "INVALID_PARAMETER_VALUE", f"Run {raw_id} does not exist.")


def _error(status: int, code: str, message: str) -> _Answer:
    return status, {"error_code": code, "message": message}, []


def _fault_answer(fault: _Fault) -> _Answer:
    assert fault.status is not None
    headers = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
    return fault.status, {"error_code": fault.error_code, "message": fault.message}, headers


async def _receive(
    connection: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request, bytes] | None:
    """The next request and its body; None when the client closed the connection."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        else:  # ConnectionClosed, or PAUSED after a protocol switch we never agree to
            return None


async def _send(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    payload: dict[str, Any],
    headers: list[tuple[str, str]],
) -> None:
    data = json.dumps(payload).encode()
    all_headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        *headers,
    ]
    reason = _REASONS.get(status, b"")
    for event in (
        h11.Response(status_code=status, headers=all_headers, reason=reason),
        h11.Data(data=data),
        h11.EndOfMessage(),
    ):
        chunk = connection.send(event)
        if chunk:
            await stream.send_all(chunk)


# -- a task template as Flyte writes it -----------------------------------------------------

ARGS = ["a0", "--inputs", "s3://bucket/in/inputs.pb", "--outputs-path", "s3://bucket/out"]


def databricks_template(instance: str | None, **custom: Any) -> TaskTemplate:
    """A template as flyte-sdk's Databricks plugin serialises it, as it comes off the wire."""
    body: dict[str, Any] = {
        "sparkConf": {"spark.driver.memory": "1g"},
        "hadoopConf": {},
        "mainApplicationFile": "local:///usr/local/bin/runtime.py",
        "executorPath": "/usr/bin/python3",
        "applicationType": "PYTHON",
        "databricksConf": {
            "run_name": "nightly",
            "new_cluster": {"spark_version": "13.3.x-scala2.12", "num_workers": 2},
            "timeout_seconds": 3600,
        },
        "secrets": {"databricks_token": "databricks-token"},
        **custom,
    }
    if instance is not None:
        body["databricksInstance"] = instance
    template = TaskTemplate(
        type="databricks",
        id=Identifier(project="p", domain="d", name="wf.spark_task"),
        custom=Struct.from_dict(body),
        container=Container(
            image="ghcr.io/acme/spark:1",
            args=ARGS,
            env=[KeyValuePair(key="FLYTE_INTERNAL_EXECUTION_ID", value="e1")],
        ),
    )
    return TaskTemplate.parse(bytes(template))  # numbers become doubles, as on the wire
