"""Importing connector modules when trio-asyncio is loaded.

trio-asyncio makes ``asyncio.new_event_loop()`` return its own sync loop, which runs only on
the thread that made it. A module that makes an asyncio loop at import and runs it on a
background thread (flyte-sdk does, for its sync wrappers) then crashes that thread. Connector
modules are therefore imported with asyncio's default loop policy for this thread.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["import_module", "plain_asyncio_loops"]


@contextmanager
def plain_asyncio_loops() -> Iterator[None]:
    """Within: ``asyncio.new_event_loop()`` in this thread makes a plain asyncio loop.

    Does nothing unless trio-asyncio is imported, or inside Trio (where trio-asyncio
    forbids it: import connector modules before ``trio.run``).
    """
    if "trio_asyncio" not in sys.modules or _in_trio():
        yield
        return
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


def import_module(name: str) -> ModuleType:
    """``importlib.import_module`` under ``plain_asyncio_loops``."""
    with plain_asyncio_loops():
        return importlib.import_module(name)


def _in_trio() -> bool:
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
