"""The registry of connectors, keyed by task category, and their discovery.

Two ways to hold connectors, as flyte-sdk has them and as tests want them:

- **The default registry**, one per process: ``ConnectorRegistry.register(c)`` and
  ``ConnectorRegistry.get_connector(name, version)`` called on the class act on it (what
  flyte-sdk's connector modules do at import). ``serve`` and ``run`` serve it.
- **Explicit registries**: ``ConnectorRegistry([a, b])``; the same methods called on an
  instance act on that instance only.

Discovery fills a registry from a module (``load_module``: what the module registered on
import, the concrete connector classes it defines, its connector instances) and from
installed distributions (``load_entry_points``: ours; ``load_flyte_entry_points``:
flyte-sdk plugins, through ``connectors.flytesdk``). Every connector is remembered with its
origin. When two claim one task type, the stronger origin wins quietly (an explicit
registration or ``--modules`` over an entry point of ours, and ours over a flyte-sdk
plugin's); two of the same strength are an error that names both.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, cast

from flyteproto.flyteidl2.connector import Connector as ConnectorInfo
from flyteproto.flyteidl2.connector import TaskCategory

from ._connector import AsyncConnector
from ._imports import import_module, plain_asyncio_loops

__all__ = [
    "ENTRY_POINT_GROUP",
    "FLYTE_ENTRY_POINT_GROUP",
    "ConnectorNeedsArguments",
    "ConnectorNotFound",
    "ConnectorRegistry",
    "DuplicateConnector",
    "TaskType",
    "load_connectors",
    "swap_default",
]

_log = logging.getLogger(__name__)

#: Installed distributions advertise connectors under this entry-point group; the value is
#: a connector class (instantiated without arguments) or an instance.
ENTRY_POINT_GROUP = "flyte_supervisor.connectors"
#: flyte-sdk plugins (``flyteplugins-*``) advertise their connectors under this group.
FLYTE_ENTRY_POINT_GROUP = "flyte.connectors"

#: Module name -> the connectors it registered with the default registry (on import):
#: ``load_module`` finds them there, whichever registry it fills.
_REGISTERED_BY: dict[str, list[AsyncConnector[Any]]] = {}

_P = ParamSpec("_P")
_R = TypeVar("_R")


class ConnectorNotFound(LookupError):
    """No connector serves the task type, or no connector has the name."""


class DuplicateConnector(ValueError):
    """A second connector for a task type that is already served."""


class ConnectorNeedsArguments(TypeError):
    """Discovery found a connector class that cannot be made without constructor arguments."""


@dataclass(frozen=True, order=True)
class TaskType:
    """A task category: the task type name and version a connector serves."""

    name: str
    version: int = 0

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class _Origin(enum.IntEnum):
    """Where a connector came from; a stronger origin takes a task type from a weaker one."""

    FLYTE_ENTRY_POINT = 0
    ENTRY_POINT = 1
    EXPLICIT = 2


@dataclass(frozen=True)
class _Entry:
    connector: AsyncConnector[Any]
    origin: _Origin
    source: str  # for people: "module 'x'", "entry point 'y' (group g)"

    def describe(self) -> str:
        wrapped = getattr(self.connector, "wrapped", None)  # a flyte-sdk one, adapted
        if wrapped is not None:
            cls = type(wrapped)
            return f"{cls.__module__}.{cls.__qualname__} (flyte-sdk) from {self.source}"
        cls = type(self.connector)
        if self.source == f"module {cls.__module__!r}":
            return f"{cls.__qualname__} from {self.source}"
        return f"{cls.__module__}.{cls.__qualname__} from {self.source}"


class _OnDefault(Generic[_P, _R]):
    """A method that, called on the class, acts on the process-wide default registry."""

    def __init__(self, method: Callable[Concatenate[ConnectorRegistry, _P], _R]) -> None:
        self._method = method
        self.__doc__ = method.__doc__

    def __get__(
        self, instance: ConnectorRegistry | None, owner: type[ConnectorRegistry]
    ) -> Callable[_P, _R]:
        target = instance if instance is not None else owner.default()
        return cast(Callable[_P, _R], functools.partial(self._method, target))


class ConnectorRegistry:
    """Connectors by task type; also the source of ListConnectors / GetConnector answers.

    ``register`` and ``get_connector`` work on the class (the default registry) and on an
    instance (that registry), as in flyte-sdk.
    """

    _default: ClassVar[ConnectorRegistry | None] = None

    def __init__(self, connectors: Iterable[AsyncConnector[Any]] = ()) -> None:
        self._entries: dict[TaskType, _Entry] = {}
        source = f"module {_caller_module()!r}"
        for connector in connectors:
            self._add(connector, _Origin.EXPLICIT, source=source)

    @classmethod
    def default(cls) -> ConnectorRegistry:
        """The process-wide registry: what ``ConnectorRegistry.register(c)`` fills."""
        if ConnectorRegistry._default is None:
            ConnectorRegistry._default = ConnectorRegistry()
        return ConnectorRegistry._default

    @_OnDefault
    def register(self, connector: AsyncConnector[Any], override: bool = False) -> None:
        """Add ``connector`` for its task type (on the class: to the default registry).

        Errors: DuplicateConnector if the task type is served already and not ``override``;
        TypeError if ``connector`` is not an AsyncConnector instance.
        """
        module = _caller_module()
        if isinstance(connector, type):
            raise TypeError(
                f"register() takes a connector instance, not the class {connector.__qualname__}:"
                f" ConnectorRegistry.register({connector.__qualname__}())"
            )
        connector = _instance(connector, f"module {module!r}")
        self._add(connector, _Origin.EXPLICIT, source=f"module {module!r}", override=override)
        if self is ConnectorRegistry._default:
            _REGISTERED_BY.setdefault(module, []).append(connector)

    @_OnDefault
    def get_connector(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector[Any]:
        """The connector for a task type (on the class: in the default registry).

        Errors: ConnectorNotFound.
        """
        return self.get(task_type_name, task_type_version)

    def get(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector[Any]:
        """Errors: ConnectorNotFound."""
        try:
            return self._entries[TaskType(task_type_name, task_type_version)].connector
        except KeyError:
            raise ConnectorNotFound(
                f"no connector for task type {task_type_name!r} version {task_type_version}"
            ) from None

    def __iter__(self) -> Iterator[tuple[TaskType, AsyncConnector[Any]]]:
        items = sorted(self._entries.items(), key=lambda item: item[0])
        return iter([(key, entry.connector) for key, entry in items])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def source_of(self, task_type_name: str, task_type_version: int = 0) -> str:
        """Where the connector for a task type came from, for people. Errors: KeyError."""
        return self._entries[TaskType(task_type_name, task_type_version)].source

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
        entry points' names. A task type served already by a stronger origin (a connector
        registered explicitly, or from ``--modules``) keeps its connector.
        Errors: DuplicateConnector, ConnectorNeedsArguments, TypeError.
        """
        skipped: list[str] = []
        for ep in entry_points(group=group):
            found = _load(ep)
            if found is None:
                skipped.append(ep.name)
                continue
            source = f"entry point {ep.name!r} ({group})"
            self._add_found(found, _Origin.ENTRY_POINT, source=source)
        return skipped

    def load_flyte_entry_points(self, group: str = FLYTE_ENTRY_POINT_GROUP) -> list[str]:
        """Host every flyte-sdk connector that installed ``flyteplugins-*`` advertise.

        As flyte-sdk's own service: each entry point's module is imported (it registers its
        connectors with flyte-sdk's registry on import); the connectors it registered are
        hosted through ``connectors.flytesdk``. A task type we serve already (a connector
        of ours, or one named explicitly) keeps its connector: the plugin's yields, with a
        log line. An entry point that does not import is skipped with a warning, as
        flyte-sdk does; returns the skipped names. Errors: DuplicateConnector when two
        plugins serve one task type.
        """
        points = list(entry_points(group=group))
        if not points:
            return []
        skipped: list[str] = []
        for ep in points:
            found = _load(ep)
            if found is None:
                skipped.append(ep.name)
                continue
            adapters = _flytesdk_connectors_in(sys.modules[ep.module])
            if not adapters:
                _log.warning(
                    "flyte.connectors entry point %r: module %r registered no flyte-sdk connector",
                    ep.name,
                    ep.module,
                )
            source = f"entry point {ep.name!r} ({group})"
            for adapter in adapters:
                self._add_found(adapter, _Origin.FLYTE_ENTRY_POINT, source=source)
        return skipped

    def load_module(self, name: str) -> None:
        """Import ``name`` and register the connectors it provides.

        A module provides connectors by registering them on import
        (``ConnectorRegistry.register(MyConnector())``), as concrete AsyncConnector subclasses
        defined in it or in its submodules (instantiated without arguments), or as
        module-level instances; any mix, each connector once. A flyte-sdk module provides
        the ``flyte.connectors`` connectors it registers, hosted through
        ``connectors.flytesdk`` (the optional ``flytesdk`` extra).
        Errors: ImportError from the import; DuplicateConnector; ConnectorNeedsArguments for
        a class that needs constructor arguments (register an instance instead).
        """
        module = import_module(name)
        source = f"module {name!r}"
        # What the module registered on import (with the default registry of the time).
        for registrar, connectors in list(_REGISTERED_BY.items()):
            if _within(registrar, name):
                for connector in connectors:
                    self._add_found(connector, _Origin.EXPLICIT, source=source)
        for found in [*_connectors_in(module), *_flytesdk_connectors_in(module)]:
            self._add_found(found, _Origin.EXPLICIT, source=source)

    # Adding ----------------------------------------------------------------------------

    def _add_found(self, found: Any, origin: _Origin, *, source: str) -> None:
        """Add what discovery found: an instance, or a class to instantiate.

        A connector of the same class that serves the task type already is the same
        connector found twice (registered on import and defined in the module, or a module
        loaded twice): skipped, and a class is then not instantiated.
        """
        if isinstance(found, type) and issubclass(found, AsyncConnector):
            key = TaskType(found.task_type_name, found.task_type_version)
            existing = self._entries.get(key)
            if existing is not None and type(existing.connector) is found:
                return
            found = _instantiate(found, source)
        connector = _instance(found, source)
        key = TaskType(connector.task_type_name, connector.task_type_version)
        existing = self._entries.get(key)
        if existing is not None and type(existing.connector) is type(connector):
            return
        self._add(connector, origin, source=source)

    def _add(
        self,
        connector: AsyncConnector[Any],
        origin: _Origin,
        *,
        source: str,
        override: bool = False,
    ) -> None:
        key = TaskType(connector.task_type_name, connector.task_type_version)
        entry = _Entry(connector, origin, source)
        existing = self._entries.get(key)
        if existing is not None and existing.connector is connector:
            return
        if existing is not None and not override:
            if existing.origin > origin:
                _log.info(
                    "task type %s: %s yields to %s", key, entry.describe(), existing.describe()
                )
                return
            if existing.origin == origin:
                raise DuplicateConnector(
                    f"duplicate connector for task type {key.name!r} version {key.version}: "
                    f"{existing.describe()} and {entry.describe()} (serve one of them, or "
                    "register the second with override=True)"
                )
            _log.info("task type %s: %s replaces %s", key, entry.describe(), existing.describe())
        self._entries[key] = entry
        _log.debug("registered %s for %s", entry.describe(), key)


def load_connectors(
    entry_points: bool, modules: Iterable[str], registry: ConnectorRegistry | None = None
) -> ConnectorRegistry:
    """What ``serve`` and ``run`` serve: ``registry`` (the default registry unless given),
    filled from installed entry points (ours, then flyte-sdk plugins'; unless
    ``entry_points`` is false) and from ``modules``, in that order.

    Errors: ImportError, DuplicateConnector, ConnectorNeedsArguments, TypeError.
    """
    registry = ConnectorRegistry.default() if registry is None else registry
    if entry_points:
        registry.load_entry_points()
        registry.load_flyte_entry_points()
    for module in modules:
        registry.load_module(module)
    return registry


def swap_default(registry: ConnectorRegistry | None) -> ConnectorRegistry | None:
    """Make ``registry`` the default registry (None: a fresh one when next asked for);
    return the one it replaces. For tests (``connectors.testing.isolated_default_registry``).
    """
    previous, ConnectorRegistry._default = ConnectorRegistry._default, registry
    return previous


def _load(ep: EntryPoint) -> Any:
    """The entry point's value; None (with a warning) when its module does not import."""
    try:
        with plain_asyncio_loops():
            return ep.load()
    except ImportError as exc:
        _log.warning("skipping connector entry point %r: %s", ep.name, exc)
        return None


def _instance(found: Any, source: str) -> AsyncConnector[Any]:
    if not isinstance(found, AsyncConnector):
        raise TypeError(f"{source} is not an AsyncConnector: {found!r}")
    return found


def _instantiate(cls: type[AsyncConnector[Any]], source: str) -> AsyncConnector[Any]:
    """``cls()``; a class whose constructor needs arguments gets a message saying what to do."""
    try:
        inspect.signature(cls).bind()
    except TypeError as exc:
        raise ConnectorNeedsArguments(
            f"{source}: connector class {cls.__qualname__} needs constructor arguments "
            f"({exc}): register an instance instead, e.g. "
            f"`ConnectorRegistry.register({cls.__qualname__}(...))` at the module's top level"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): try the call
        pass
    return cls()


def _caller_module() -> str:
    """The name of the module that called into this one (who is registering)."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "functools"):
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "?")) if frame is not None else "?"


def _within(module: str, package: str) -> bool:
    return (module + ".").startswith(package + ".")


def _connectors_in(module: ModuleType) -> Iterator[Any]:
    instances = [v for v in vars(module).values() if isinstance(v, AsyncConnector)]
    instance_types = {type(v) for v in instances}
    yield from instances
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, AsyncConnector)
            and _within(value.__module__, module.__name__)
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
