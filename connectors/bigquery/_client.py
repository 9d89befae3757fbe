"""BigQuery clients: credentials, one client per (project, credentials), short retries.

google-cloud-bigquery is blocking (requests) and, left to its defaults, retries a call for
up to 10 minutes with no timeout per request. Every call here goes through a worker thread
with an explicit retry deadline and request timeout, so a down or hung endpoint costs
seconds; the supervisor's own backoff does the rest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import trio
from google.api_core.client_info import ClientInfo
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import service_account

from .._errors import PermanentError

if TYPE_CHECKING:
    # google.cloud.bigquery takes most of a second to import (more with pandas and
    # bigquery-storage installed): imported on first use, so that a server that has this
    # connector installed but serves no BigQuery job starts without it.
    from google.cloud import bigquery

__all__ = [
    "CREDENTIALS_SECRET",
    "EMULATOR_HOST_ENV",
    "REQUEST_TIMEOUT",
    "RETRY_DEADLINE",
    "ClientFactory",
    "ClientPool",
    "default_client_factory",
    "in_thread",
    "short_retry",
]

#: Seconds the client library keeps retrying a call's transient errors (its default: 600).
RETRY_DEADLINE = 10.0
#: Seconds one HTTP request may take (the library's default: no limit).
REQUEST_TIMEOUT = 20.0
_RETRY_INITIAL_DELAY = 0.25
_RETRY_MAX_DELAY = 2.0
#: The connection secret holding a service-account key (its JSON text), as in Flyte's
#: BigQuery connector; without it, the connector's credentials or application default ones.
CREDENTIALS_SECRET = "google_application_credentials"
#: As for google-cloud-bigquery: the URL of a BigQuery emulator (``host:port`` means http).
#: When it is set and the connector is given no endpoint and no credentials, the connector
#: talks to the emulator with anonymous credentials.
EMULATOR_HOST_ENV = "BIGQUERY_EMULATOR_HOST"
_USER_AGENT = "flyte-connector-supervisor"
#: Clients kept (each holds an HTTP connection pool); the least recently used goes first.
_MAX_CLIENTS = 16

#: ``factory(project, credentials)`` makes a client; credentials None means "your default".
ClientFactory: TypeAlias = Callable[[str | None, Credentials | None], "bigquery.Client"]
_T = TypeVar("_T")


def short_retry(deadline: float) -> Retry:
    """BigQuery's own retry policy (what it retries), with a short deadline and delays."""
    from google.cloud import bigquery

    return bigquery.DEFAULT_RETRY.with_timeout(deadline).with_delay(
        initial=_RETRY_INITIAL_DELAY, maximum=_RETRY_MAX_DELAY
    )


def default_client_factory(
    project: str | None, credentials: Credentials | None, *, api_endpoint: str | None = None
) -> bigquery.Client:
    """A client for ``project`` (None: the credentials' project), at ``api_endpoint``."""
    options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
    from google.cloud import bigquery

    return bigquery.Client(
        project=project,
        credentials=credentials,
        client_options=options,
        client_info=ClientInfo(user_agent=_USER_AGENT),  # type: ignore[no-untyped-call]
    )


async def in_thread(fn: Callable[[], _T]) -> _T:
    """Run a blocking call in a worker thread.

    Cancellation: the caller is released at once; the thread runs on until the call's own
    retry deadline and timeout end it, and its result is dropped.
    """
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


async def import_bigquery() -> None:
    """Import google.cloud.bigquery (once) in a worker thread: the first BigQuery call of
    the process does not stall the event loop for the import."""
    if "google.cloud.bigquery" not in sys.modules:
        await trio.to_thread.run_sync(importlib.import_module, "google.cloud.bigquery")


class ClientPool:
    """Clients by (project, credentials), made in a worker thread on first use.

    Keyword-only options: ``factory`` makes the clients; ``credentials`` are used when a call
    brings no service-account key (None: the factory's default, i.e. application default
    credentials).
    """

    def __init__(self, *, factory: ClientFactory, credentials: Credentials | None) -> None:
        self._factory = factory
        self._credentials = credentials
        self._clients: OrderedDict[tuple[str | None, str | None], bigquery.Client] = OrderedDict()

    @classmethod
    def from_options(
        cls,
        *,
        api_endpoint: str | None,
        credentials: Credentials | None,
        client_factory: ClientFactory | None,
    ) -> ClientPool:
        """The pool for the connector's constructor options (see BigQueryConnector)."""
        if client_factory is not None:
            if api_endpoint is not None:
                raise TypeError("give api_endpoint or client_factory, not both")
            return cls(factory=client_factory, credentials=credentials)
        emulator = os.environ.get(EMULATOR_HOST_ENV)
        if api_endpoint is None and credentials is None and emulator:
            api_endpoint = emulator if "://" in emulator else f"http://{emulator}"
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        factory = functools.partial(default_client_factory, api_endpoint=api_endpoint)
        return cls(factory=factory, credentials=credentials)

    async def client(self, project: str | None, key_json: str | None = None) -> bigquery.Client:
        """The client for ``project`` with the service-account key ``key_json`` (if any).

        The key stays in memory: the pool is keyed by its digest, and it is never logged.
        Errors: PermanentError when ``key_json`` is not a service-account key.
        """
        digest = hashlib.sha256(key_json.encode()).hexdigest() if key_json else None
        cache_key = (project, digest)
        client = self._clients.get(cache_key)
        if client is None:
            client = await in_thread(functools.partial(self._make, project, key_json))
            client = self._clients.setdefault(cache_key, client)
            while len(self._clients) > _MAX_CLIENTS:
                self._clients.popitem(last=False)
        self._clients.move_to_end(cache_key)
        return client

    def _make(self, project: str | None, key_json: str | None) -> bigquery.Client:
        credentials = service_account_credentials(key_json) if key_json else self._credentials
        return self._factory(project, credentials)


def service_account_credentials(key_json: str) -> Credentials:
    """Errors: PermanentError, saying what is wrong without repeating the key."""
    try:
        info = json.loads(key_json)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        if not isinstance(info.get("private_key"), str):
            # Else google.auth's error would show the value.
            raise ValueError("private_key is missing or not a string")
        from_info = service_account.Credentials.from_service_account_info
        credentials: Credentials = from_info(info)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError) as exc:
        # json.JSONDecodeError, google.auth's and cryptography's errors name positions,
        # fields and formats, never the content.
        raise PermanentError(
            f"connection secret {CREDENTIALS_SECRET!r} is not a service-account key: {exc}"
        ) from None
    return credentials
