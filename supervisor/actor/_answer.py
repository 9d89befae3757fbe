"""The GetTask answer for a journalled job: as a message, and as the bytes the edge sends."""

from __future__ import annotations

import json

from connectors import Phase
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.task import Outputs
from flyteproto.google.protobuf import Struct

from ..journal import JobRecord
from ._links import link_from_json

__all__ = ["answer_for", "encode_answer"]


def answer_for(record: JobRecord) -> pb.GetTaskResponse:
    """The GetTask answer for a journalled job."""
    return pb.GetTaskResponse(
        resource=pb.Resource(
            phase=Phase(record.phase),
            message=record.message,
            log_links=[link_from_json(item) for item in json.loads(record.log_links)],
            outputs=Outputs.parse(record.outputs) if record.outputs is not None else None,
            custom_info=(
                Struct.from_dict(json.loads(record.custom_info))
                if record.custom_info is not None
                else None
            ),
        )
    )


def encode_answer(record: JobRecord) -> bytes:
    """``bytes(answer_for(record))``, written directly: what the edge sends for a GetTask.

    Hot path (the first GetTask after each change of every job): building and serialising
    the answer through betterproto2 costs far more than writing its few fields directly
    (BENCHMARKS.md has the figures). The fields go in betterproto2's
    order (declaration order, which for Resource is field-number order), proto3 defaults
    left out; the journalled ``outputs`` bytes are written as they are. Log links and custom
    info are converted through betterproto2 once per distinct JSON text (cached).
    """
    resource = bytearray()
    if record.outputs is not None:
        _put_bytes(resource, 2, record.outputs)
    if record.message:
        _put_bytes(resource, 3, record.message.encode())
    resource += _log_links_field(record.log_links)
    if record.phase:
        _put_varint(resource, (5 << 3) | 0)
        _put_varint(resource, record.phase)
    if record.custom_info is not None:
        resource += _custom_info_field(record.custom_info)
    answer = bytearray()
    _put_bytes(answer, 1, resource)
    return bytes(answer)


#: Distinct log-link / custom-info JSON texts whose encoding is kept (then the cache restarts).
_ENCODED_CACHE_SIZE = 1024
_log_links_cache: dict[str, bytes] = {}
_custom_info_cache: dict[str, bytes] = {}


def _log_links_field(text: str) -> bytes:
    """Resource.log_links (field 4, repeated TaskLog) for the journal's JSON text."""
    encoded = _log_links_cache.get(text)
    if encoded is None:
        field = bytearray()
        for item in json.loads(text):
            _put_bytes(field, 4, bytes(link_from_json(item)))
        encoded = _remember(_log_links_cache, text, bytes(field))
    return encoded


def _custom_info_field(text: str) -> bytes:
    """Resource.custom_info (field 6, Struct) for the journal's JSON text."""
    encoded = _custom_info_cache.get(text)
    if encoded is None:
        field = bytearray()
        _put_bytes(field, 6, bytes(Struct.from_dict(json.loads(text))))
        encoded = _remember(_custom_info_cache, text, bytes(field))
    return encoded


def _remember(cache: dict[str, bytes], key: str, value: bytes) -> bytes:
    if len(cache) >= _ENCODED_CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _put_bytes(out: bytearray, number: int, value: bytes | bytearray) -> None:
    """A length-delimited field: key, length, bytes."""
    _put_varint(out, (number << 3) | 2)
    _put_varint(out, len(value))
    out += value


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        value += 1 << 64  # negative int32/enum values are ten-byte varints
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
