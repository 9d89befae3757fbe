"""Messages across the boundary: our betterproto2 types <-> flyte-sdk's official protobufs.

Both sides are generated from the same flyteidl2 descriptors, so every conversion is a
serialisation on one side and a parse on the other: lossless, and unknown fields survive.
The ``*_async`` functions run on the asyncio side (inside the trio-asyncio loop), because
flyte-sdk's own conversions (its TypeEngine) are asyncio code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from flyteidl2.connector import connector_pb2
from flyteidl2.core import literals_pb2, tasks_pb2
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.task import common_pb2

from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import TaskTemplate

from .._phase import Phase
from .._resource import Resource

__all__ = [
    "official_metadata",
    "official_template",
    "ours",
    "resource_bytes_async",
    "resource_from_bytes",
    "unrecognized_state_bytes",
]

_log = logging.getLogger(__name__)

#: How flyte-sdk's ``convert_to_flyte_phase`` refuses a state it does not know.
_UNRECOGNIZED_STATE = "Unrecognized state:"


def official_template(template: TaskTemplate) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate.FromString(bytes(template))


def official_metadata(
    metadata: pb.TaskExecutionMetadata | None,
) -> connector_pb2.TaskExecutionMetadata | None:
    if metadata is None:
        return None
    return connector_pb2.TaskExecutionMetadata.FromString(bytes(metadata))


def ours(message: Any, our_type: type[Any]) -> Any:
    """An official protobuf message as the betterproto2 class ``our_type``."""
    return our_type.parse(message.SerializeToString())


async def resource_bytes_async(resource: Any, *, connector: str) -> bytes:
    """A flyte-sdk ``Resource`` as serialised ``flyteidl2.connector.Resource``.

    Native outputs go through flyte-sdk's own conversion (its TypeEngine, as its connector
    service does: a ``flyte.io.DataFrame`` becomes a structured dataset literal); outputs
    given as a ``LiteralMap`` or as official ``Literal`` values are taken as they are.
    Errors: TypeError when ``resource`` is not a flyte-sdk Resource.
    """
    from flyte.connectors import Resource as SdkResource
    from flyte.connectors._connector import get_resource_proto

    if not isinstance(resource, SdkResource):
        raise TypeError(f"{connector} returned {type(resource).__name__} from get, not a Resource")
    literals = _literal_outputs(resource.outputs)
    if literals is not None:
        resource = dataclasses.replace(resource, outputs=None)
    proto = await get_resource_proto(resource)
    if literals is not None:
        proto.outputs.CopyFrom(literals)
    data: bytes = proto.SerializeToString()
    return data


def unrecognized_state_bytes(exc: ValueError, *, connector: str) -> bytes | None:
    """RUNNING with a message for flyte-sdk's "Unrecognized state" error; None for others.

    flyte-sdk's ``convert_to_flyte_phase`` raises on a state it does not know, which its
    service reports as an error on every poll until Propeller gives up; we keep polling.
    """
    text = str(exc)
    if not text.startswith(_UNRECOGNIZED_STATE):
        return None
    state = text[len(_UNRECOGNIZED_STATE) :].strip()
    _log.warning("%s: unknown external state %r: reporting RUNNING", connector, state)
    message = f"unknown {connector} state {state!r}: treated as running"
    resource = connector_pb2.Resource(phase=TaskExecution.RUNNING, message=message)
    data: bytes = resource.SerializeToString()
    return data


def resource_from_bytes(data: bytes) -> Resource:
    """Our Resource from a serialised ``flyteidl2.connector.Resource``.

    Outputs stay literals (``native_to_outputs`` passes literals through unchanged), so
    they reach Propeller exactly as flyte-sdk converted them.
    """
    message = pb.Resource.parse(data)
    outputs = message.outputs
    return Resource(
        phase=Phase(message.phase),
        message=message.message,
        log_links=list(message.log_links),
        outputs={named.name: named.value for named in outputs.literals} if outputs else None,
        custom_info=message.custom_info.to_dict() if message.custom_info is not None else None,
    )


def _literal_outputs(outputs: Any) -> common_pb2.Outputs | None:
    if isinstance(outputs, literals_pb2.LiteralMap):
        items: Mapping[str, Any] = outputs.literals
    elif (
        isinstance(outputs, Mapping)
        and outputs
        and all(isinstance(value, literals_pb2.Literal) for value in outputs.values())
    ):
        items = outputs
    else:
        return None
    return common_pb2.Outputs(
        literals=[common_pb2.NamedLiteral(name=name, value=value) for name, value in items.items()]
    )
