"""The three Jobs API 2.1 calls the connector makes, and what their failures mean.

Every call has an explicit timeout (httpx's per-operation timeouts, and a Trio deadline on
the whole exchange so a server that trickles bytes cannot hold a call). The bearer token
goes in the Authorization header only: never in a URL, a message or a log line.

Errors:
    DatabricksTransientError: 408, 429 (with its Retry-After), 5xx, network errors,
        timeouts, and a 2xx answer that is not the JSON object the API documents.
    JobNotFound (from ``get_run`` and ``cancel_run``): the run does not exist: HTTP 404,
        error code RESOURCE_DOES_NOT_EXIST, or Databricks' usual 400 INVALID_PARAMETER_VALUE
        "Run 123 does not exist".
    DatabricksRequestError (a PermanentError): any other 4xx.
    PermanentError: an instance that is not a usable URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from .._errors import JobNotFound, PermanentError
from ._client import shared_client
from ._errors import DatabricksRequestError, DatabricksTransientError, parse_retry_after

__all__ = ["JOBS_API", "JobsApi", "base_url"]

JOBS_API = "/api/2.1/jobs"
#: Statuses worth repeating a request for (besides every 5xx).
_TRANSIENT_STATUSES = frozenset({408, 429})
#: How Databricks words "no such run" when it answers 400 INVALID_PARAMETER_VALUE.
_NO_SUCH_RUN = re.compile(r"\brun\b.*\b(does not exist|doesn't exist)", re.IGNORECASE)
#: How much of an error body goes into a message.
_BODY_EXCERPT = 300


def base_url(instance: str) -> str:
    """``https://<instance>`` for a bare host name; an instance with a scheme stays as it is."""
    text = instance.strip().rstrip("/")
    return text if "://" in text else f"https://{text}"


@dataclass(frozen=True)
class JobsApi:
    """The Jobs API of one workspace, called with one token."""

    instance: str
    token: str = field(repr=False)
    timeout: float

    async def submit(self, body: Mapping[str, Any]) -> int:
        """POST runs/submit; the new (or, for a known idempotency token, existing) run id."""
        answer = await self._call("POST", "runs/submit", json_body=body, missing_run=False)
        run_id = answer.get("run_id")
        if isinstance(run_id, bool) or not isinstance(run_id, int | str) or not str(run_id):
            raise DatabricksTransientError(f"runs/submit answered without a run_id: {answer!r}")
        return int(run_id)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """GET runs/get: the run as Databricks describes it."""
        return await self._call("GET", "runs/get", params={"run_id": run_id}, missing_run=True)

    async def cancel_run(self, run_id: str) -> None:
        """POST runs/cancel. Asynchronous; a no-op for a run that has already ended."""
        await self._call("POST", "runs/cancel", json_body={"run_id": _id(run_id)}, missing_run=True)

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        missing_run: bool,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = f"{base_url(self.instance)}{JOBS_API}/{endpoint}"
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            with trio.fail_after(self.timeout):
                response = await shared_client().request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout),
                )
        except (trio.TooSlowError, httpx.TimeoutException):
            raise DatabricksTransientError(
                f"{endpoint}: no answer from {self.instance} within {self.timeout:g}s"
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentError(
                f"Databricks instance {self.instance!r} is not usable: {exc}"
            ) from None
        except httpx.TransportError as exc:
            raise DatabricksTransientError(
                f"{endpoint}: {type(exc).__name__} talking to {self.instance}: {exc}"
            ) from None
        return _answer(endpoint, response, missing_run=missing_run)


def _answer(endpoint: str, response: httpx.Response, *, missing_run: bool) -> dict[str, Any]:
    status = response.status_code
    if 200 <= status < 300:
        try:
            value = json.loads(response.content or b"{}")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise DatabricksTransientError(
                f"{endpoint}: HTTP {status} with a body that is not a JSON object",
                status=status,
            )
        return value
    error_code, detail = _error_of(response)
    text = f"{endpoint}: HTTP {status}" + (f" {error_code}" if error_code else "")
    text += f": {detail}" if detail else ""
    if status in _TRANSIENT_STATUSES or status >= 500:
        raise DatabricksTransientError(
            text,
            status=status,
            error_code=error_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if missing_run and _is_missing_run(status, error_code, detail):
        raise JobNotFound(text)
    raise DatabricksRequestError(text, status=status, error_code=error_code)


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """Databricks' ``{"error_code": ..., "message": ...}``, or an excerpt of another body."""
    try:
        value = json.loads(response.content)
    except ValueError:
        value = None
    if isinstance(value, dict) and ("error_code" in value or "message" in value):
        code = value.get("error_code")
        return (str(code) if code else None), str(value.get("message") or "")
    text = response.text.strip()
    return None, text[:_BODY_EXCERPT] or response.reason_phrase


def _is_missing_run(status: int, error_code: str | None, detail: str) -> bool:
    if error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    if status == 404:
        return error_code != "ENDPOINT_NOT_FOUND"  # a wrong URL is not a lost run
    invalid = status == 400 and error_code == "INVALID_PARAMETER_VALUE"
    return invalid and _NO_SUCH_RUN.search(detail) is not None


def _id(run_id: str) -> int | str:
    """Run ids are 64-bit integers; the JSON body carries them as numbers."""
    return int(run_id) if run_id.isdigit() else run_id
