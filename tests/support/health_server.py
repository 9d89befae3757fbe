"""A grpclib health service with a fixed overall status, in a process of its own.

    python -m tests.support.health_server SERVING|NOT_SERVING|UNKNOWN

prints ``listening on PORT`` once it listens, then serves until killed. A process of its
own because grpclib's health messages and grpcio's (which the end-to-end tests import)
cannot both be registered in one protobuf descriptor pool.
"""

from __future__ import annotations

import asyncio
import sys

from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.server import Server


async def serve(status_name: str) -> None:
    status = ServiceStatus()
    if status_name != "UNKNOWN":
        status.set(status_name == "SERVING")
    server = Server([Health({OVERALL: [status]})])
    await server.start("127.0.0.1", 0)
    sockets = getattr(server._server, "sockets", None) or []
    print(f"listening on {sockets[0].getsockname()[1]}", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
