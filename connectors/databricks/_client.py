"""One pooled ``httpx.AsyncClient`` per Trio run, shared by every Databricks call.

Polling tens of thousands of runs must not open a TLS connection per call, so calls share
a connection pool. The pool belongs to the Trio run (a ``RunVar``): it is made on first use
and closed by a system task when the run ends, so nothing leaks a socket and no caller has
to manage its lifetime.
"""

from __future__ import annotations

import logging

import httpx
import trio

__all__ = ["shared_client"]

_log = logging.getLogger(__name__)

#: Connections kept per run. The supervisor caps calls in flight per connector
#: (``max_concurrent_calls``), so this only bounds what several connectors could open.
POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30)
#: How long closing the pool at the end of a run may take.
CLOSE_GRACE = 5.0

_client: trio.lowlevel.RunVar[httpx.AsyncClient] = trio.lowlevel.RunVar("databricks_http_client")


def shared_client() -> httpx.AsyncClient:
    """This run's client, made on first use. Errors: RuntimeError outside a Trio run."""
    try:
        return _client.get()
    except LookupError:
        pass
    client = httpx.AsyncClient(limits=POOL_LIMITS, follow_redirects=False)
    _client.set(client)
    trio.lowlevel.spawn_system_task(_close_at_run_end, client, name="databricks http pool")
    return client


async def _close_at_run_end(client: httpx.AsyncClient) -> None:
    try:
        await trio.sleep_forever()
    finally:
        # System tasks are cancelled when the run's main task returns; close from here.
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            try:
                await client.aclose()
            except Exception as exc:  # a system task must not raise: it would crash the run
                _log.warning("closing the Databricks HTTP pool failed: %s", exc)
