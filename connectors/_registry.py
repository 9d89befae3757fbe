"""The registry of connectors, keyed by task category, and their discovery."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from flyteproto.flyteidl2.connector import Connector as ConnectorInfo
from flyteproto.flyteidl2.connector import TaskCategory

from ._connector import AsyncConnector
from ._imports import import_module, plain_asyncio_loops

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConnectorNotFound",
    "ConnectorRegistry",
    "DuplicateConnector",
    "TaskType",
]

_log = logging.getLogger(__name__)

#: Installed distributions advertise connectors under this entry-point group; the value is
#: a connector class (instantiated without arguments) or an instance.
ENTRY_POINT_GROUP = "flyte_supervisor.connectors"


class ConnectorNotFound(LookupError):
    """No connector serves the task type, or no connector has the name."""


class DuplicateConnector(ValueError):
    """A second connector for a task type that is already served."""


@dataclass(frozen=True, order=True)
class TaskType:
    """A task category: the task type name and version a connector serves."""

    name: str
    version: int = 0

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ConnectorRegistry:
    """Connectors by task type; also the source of ListConnectors / GetConnector answers."""

    def __init__(self, connectors: Iterable[AsyncConnector[Any]] = ()) -> None:
        self._by_type: dict[TaskType, AsyncConnector[Any]] = {}
        for connector in connectors:
            self.register(connector)

    def register(self, connector: AsyncConnector[Any], *, override: bool = False) -> None:
        """Add ``connector`` for its task type.

        Errors: DuplicateConnector if the task type is served already and not ``override``.
        """
        key = TaskType(connector.task_type_name, connector.task_type_version)
        if key in self._by_type and not override:
            raise DuplicateConnector(
                f"duplicate connector for task type {key.name!r} version {key.version}: "
                f"{type(self._by_type[key]).__qualname__} and {type(connector).__qualname__}"
            )
        self._by_type[key] = connector

    def get(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector[Any]:
        """Errors: ConnectorNotFound."""
        try:
            return self._by_type[TaskType(task_type_name, task_type_version)]
        except KeyError:
            raise ConnectorNotFound(
                f"no connector for task type {task_type_name!r} version {task_type_version}"
            ) from None

    def __iter__(self) -> Iterator[tuple[TaskType, AsyncConnector[Any]]]:
        return iter(sorted(self._by_type.items(), key=lambda item: item[0]))

    def __len__(self) -> int:
        return len(self._by_type)

    def __contains__(self, key: object) -> bool:
        return key in self._by_type

    def list_metadata(self) -> list[ConnectorInfo]:
        """One entry per connector name, with every task category it serves."""
        by_name: dict[str, list[TaskCategory]] = {}
        for key, connector in self:
            categories = by_name.setdefault(connector.name, [])
            categories.append(TaskCategory(name=key.name, version=key.version))
        return [
            ConnectorInfo(name=name, supported_task_categories=categories)
            for name, categories in sorted(by_name.items())
        ]

    def metadata(self, name: str) -> ConnectorInfo:
        """Errors: ConnectorNotFound."""
        for info in self.list_metadata():
            if info.name == name:
                return info
        raise ConnectorNotFound(f"no connector named {name!r}")

    # Discovery -------------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every connector advertised by installed distributions.

        A connector whose module does not import (an optional extra not installed) is
        skipped with a warning rather than taking the others down; returns the skipped
        entry points' names. Errors: DuplicateConnector, TypeError.
        """
        skipped: list[str] = []
        for ep in entry_points(group=group):
            try:
                with plain_asyncio_loops():
                    found = ep.load()
            except ImportError as exc:
                _log.warning("skipping connector entry point %r: %s", ep.name, exc)
                skipped.append(ep.name)
                continue
            self._register_found(found, source=f"entry point {ep.name!r}")
        return skipped

    def load_module(self, name: str) -> None:
        """Import ``name`` and register the connectors it defines.

        A module provides connectors as concrete AsyncConnector subclasses defined in it or
        in its submodules (instantiated without arguments), or as module-level instances.
        A flyte-sdk module provides the ``flyte.connectors`` connectors it defines, hosted
        through ``connectors.flytesdk`` (the optional ``flytesdk`` extra).
        Errors: ImportError from the import.
        """
        module = import_module(name)
        for found in [*_connectors_in(module), *_flytesdk_connectors_in(module)]:
            self._register_found(found, source=f"module {name!r}", replace_same_class=True)

    def _register_found(self, found: Any, *, source: str, replace_same_class: bool = False) -> None:
        # Instantiate connector classes only: anything else is refused, not called.
        is_connector_class = isinstance(found, type) and issubclass(found, AsyncConnector)
        connector = found() if is_connector_class else found
        if not isinstance(connector, AsyncConnector):
            raise TypeError(f"{source} is not an AsyncConnector: {found!r}")
        key = TaskType(connector.task_type_name, connector.task_type_version)
        existing = self._by_type.get(key)
        if replace_same_class and existing is not None and type(existing) is type(connector):
            return
        self.register(connector)
        _log.debug("registered %s for %s from %s", type(connector).__qualname__, key, source)


def _connectors_in(module: ModuleType) -> Iterator[Any]:
    instances = [v for v in vars(module).values() if isinstance(v, AsyncConnector)]
    instance_types = {type(v) for v in instances}
    yield from instances
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, AsyncConnector)
            and (value.__module__ + ".").startswith(module.__name__ + ".")
            and not inspect.isabstract(value)
            and value not in instance_types
        ):
            yield value


def _flytesdk_connectors_in(module: ModuleType) -> list[Any]:
    # Only once something imported flyte-sdk's connector API: the adapter needs it.
    if "flyte.connectors" not in sys.modules:
        return []
    from .flytesdk import adapters_in

    return list(adapters_in(module))
