"""A deliberately broken server: the real Supervisor and gRPC edge over an InMemoryJournal.

    python -m tests.support.journalless_server PORT

It serves the ``verify`` connector on 127.0.0.1:PORT, prints ``serving on HOST:PORT``,
and keeps nothing across a restart: a DeleteTask answered before a kill -9 is forgotten
with its journalled intent. ``verify-recovery`` must catch it (tests/test_verify_recovery.py).
"""

from __future__ import annotations

import sys

import trio
import trio_asyncio

from connectors import ConnectorRegistry
from connectors.verify import VerifyConnector
from supervisor import InMemoryJournal, Supervisor, serve_grpc

META_KEY = b"journalless-test-double-meta-key-32b"


async def _serve(port: int) -> None:
    registry = ConnectorRegistry([VerifyConnector()])
    async with (
        trio_asyncio.open_loop(),
        # A fixed key: what it hands out stays valid across restarts (only the journal goes).
        Supervisor(registry, InMemoryJournal(), meta_key=META_KEY).running() as supervisor,
        trio.open_nursery() as nursery,
    ):
        bound = await nursery.start(
            lambda task_status: serve_grpc(
                supervisor, host="127.0.0.1", port=port, grace=1.0, task_status=task_status
            )
        )
        print(f"serving on {bound.host}:{bound.port}", flush=True)


if __name__ == "__main__":
    trio.run(_serve, int(sys.argv[1]))
