"""What a connector hands back: the job's handle (ResourceMeta) and its state (Resource)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Self

from flyteproto.flyteidl2.core import TaskLog

from ._phase import Phase

__all__ = ["InvalidResourceMeta", "Resource", "ResourceMeta", "TaskLog"]

_T = typing.TypeVar("_T")


class InvalidResourceMeta(ValueError):
    """Bytes that do not decode to a connector's ResourceMeta."""


@dataclass
class ResourceMeta:
    """The connector's handle on one external job (for example its job id).

    Subclasses are dataclasses whose fields are JSON values; ``encode`` gives the bytes
    Propeller stores and sends back on every GetTask and DeleteTask.
    """

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode bytes made by ``encode``.

        Errors: InvalidResourceMeta says what is wrong (not JSON, not an object, missing or
        unknown fields).
        """
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidResourceMeta(f"resource_meta is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidResourceMeta(
                f"resource_meta must be a JSON object, not {type(value).__name__}"
            )
        return _from_dict(cls, value)


def _from_dict(cls: type[_T], value: dict[str, Any]) -> _T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InvalidResourceMeta(f"unknown field(s) for {cls.__name__}: {', '.join(unknown)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise InvalidResourceMeta(f"missing field(s) for {cls.__name__}: {', '.join(missing)}")
    hints = _hints(cls)  # once per class: resume decodes every job's meta
    kwargs = {name: _coerce(hints.get(name, Any), item) for name, item in value.items()}
    return cls(**kwargs)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _coerce(hint: Any, item: Any) -> Any:
    """Rebuild nested dataclasses; leave plain JSON values as they are."""
    if isinstance(item, dict) and dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _from_dict(hint, item)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(item, dict):
                return _from_dict(arg, item)  # type: ignore[arg-type]
    return item


@dataclass
class Resource:
    """The state of an external job as a connector reports it.

    ``outputs`` are native Python values (converted to flyteidl2 literals for the caller) and
    ``custom_info`` is any JSON-compatible mapping, shown to users.
    """

    phase: Phase
    message: str = ""
    log_links: list[TaskLog] = dataclasses.field(default_factory=list)
    outputs: dict[str, Any] | None = None
    custom_info: dict[str, Any] | None = None
