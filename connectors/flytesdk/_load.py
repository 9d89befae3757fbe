"""Finding flyte-sdk connectors: in a module, or everything flyte-sdk has registered."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .._imports import plain_asyncio_loops
from ._adapter import FlyteSdkConnector

with plain_asyncio_loops():  # flyte-sdk makes an asyncio loop at import
    # flyte.io registers the TypeEngine transformers (files, directories, dataframes) that
    # converting a connector's outputs needs: import it now, not in the middle of a poll.
    import flyte.io  # noqa: F401
    from flyte.connectors import AsyncConnector as SdkConnector
    from flyte.connectors import ConnectorRegistry as SdkRegistry

__all__ = ["adapters_in", "load", "registered"]


def load(*modules: str | ModuleType) -> list[FlyteSdkConnector]:
    """Import each module (a name or a module) and adapt the flyte-sdk connectors it provides.

    See ``adapters_in``. Errors: ImportError from an import.
    """
    found: dict[int, FlyteSdkConnector] = {}
    for module in modules:
        if isinstance(module, str):
            module = importlib.import_module(module)
        for adapter in adapters_in(module):
            found.setdefault(id(adapter.wrapped), adapter)
    return list(found.values())


def adapters_in(module: ModuleType) -> list[FlyteSdkConnector]:
    """Adapters for the flyte-sdk connectors an imported module provides.

    Those are the connectors in flyte-sdk's ConnectorRegistry whose class is defined in the
    module or its submodules (what a ``flyteplugins-*`` connector module registers when it
    is imported), and flyte-sdk connector instances that are attributes of the module.
    Connectors other modules registered are left out: importing a plugin never brings a
    second connector for a task type someone else serves.
    """
    prefix = module.__name__ + "."
    candidates = [
        *(c for c in _registered() if (type(c).__module__ + ".").startswith(prefix)),
        *(v for v in vars(module).values() if isinstance(v, SdkConnector)),
    ]
    unique: dict[int, Any] = {id(c): c for c in candidates}
    return [FlyteSdkConnector(c) for c in unique.values()]


def registered() -> list[FlyteSdkConnector]:
    """Adapters for every connector registered in flyte-sdk's ConnectorRegistry so far."""
    return [FlyteSdkConnector(c) for c in _registered()]


def _registered() -> list[Any]:
    # flyte-sdk keeps its registry in a class attribute and has no public way to list it.
    return list(SdkRegistry._REGISTRY.values())
