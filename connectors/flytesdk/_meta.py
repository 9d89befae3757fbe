"""The handle of a flyte-sdk connector's job: its own resource_meta bytes, carried unchanged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from .._resource import InvalidResourceMeta, ResourceMeta

__all__ = ["FlyteSdkMeta", "meta_type_for"]


@dataclass
class FlyteSdkMeta(ResourceMeta):
    """A flyte-sdk ``ResourceMeta`` as the bytes its own ``encode`` made.

    ``encode`` returns those bytes untouched, so Propeller stores exactly what flyte-sdk's
    own connector service would have returned and may switch between the two services.
    ``wrapped`` is the decoded flyte-sdk meta (what the wrapped connector's ``get`` and
    ``delete`` receive). Each adapted connector has a subclass whose ``wrapped_type`` is
    that connector's ``metadata_type`` (see ``meta_type_for``).
    """

    data: bytes
    wrapped: Any = dataclasses.field(default=None, compare=False, repr=False)

    wrapped_type: ClassVar[Any] = None

    def encode(self) -> bytes:
        return self.data

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Errors: InvalidResourceMeta when the wrapped type's ``decode`` refuses ``data``."""
        if cls.wrapped_type is None:
            raise InvalidResourceMeta(f"{cls.__name__} is not bound to a flyte-sdk meta type")
        try:
            wrapped = cls.wrapped_type.decode(bytes(data))
        except Exception as exc:
            raise InvalidResourceMeta(
                f"not a {cls.wrapped_type.__name__}: {type(exc).__name__}: {exc}"
            ) from None
        return cls(data=bytes(data), wrapped=wrapped)

    @classmethod
    def of(cls, wrapped: Any) -> Self:
        """Wrap a flyte-sdk meta just returned by ``create``."""
        return cls(data=wrapped.encode(), wrapped=wrapped)


def meta_type_for(wrapped_type: type[Any]) -> type[FlyteSdkMeta]:
    """A FlyteSdkMeta subclass bound to the flyte-sdk meta class ``wrapped_type``."""
    return type(
        f"FlyteSdkMeta[{wrapped_type.__qualname__}]",
        (FlyteSdkMeta,),
        {"wrapped_type": wrapped_type, "__module__": __name__},
    )
