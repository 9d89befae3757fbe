"""Fixtures of the BigQuery tests, as a plugin (``pytest_plugins``: this module).

One emulator serves the whole session (it starts in about 1.5 s); each test gets its own
proxy in front of it, so the proxy's records are the test's alone. Job ids come from
random idempotency keys, so tests never meet each other's jobs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials

from connectors.bigquery import BigQueryConnector

from .emulator import Emulator, EmulatorUnavailable, running_emulator
from .proxy import BigQueryProxy

#: Short enough that a failing call fails in seconds; long enough for a slow CI machine.
RETRY_DEADLINE = 2.0
REQUEST_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The running emulator (skips the test, saying why, when it cannot start)."""
    with contextlib.ExitStack() as stack:
        try:
            emulator = stack.enter_context(running_emulator(tmp_path_factory.mktemp("bqemu")))
        except EmulatorUnavailable as exc:
            pytest.skip(f"the BigQuery emulator (bqemulator) cannot start: {exc}")
        yield emulator


@pytest.fixture
def bigquery_proxy(bigquery_emulator: Emulator) -> Iterator[BigQueryProxy]:
    """A proxy of its own in front of the session's emulator."""
    with BigQueryProxy(bigquery_emulator.url) as proxy:
        yield proxy


@pytest.fixture
def bigquery_connector(bigquery_proxy: BigQueryProxy) -> BigQueryConnector:
    """The connector, talking to the proxy with anonymous credentials and short retries."""
    return BigQueryConnector(
        api_endpoint=bigquery_proxy.url,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        retry_deadline=RETRY_DEADLINE,
        request_timeout=REQUEST_TIMEOUT,
    )
