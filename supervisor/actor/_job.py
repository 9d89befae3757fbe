"""A job's state as the supervisor keeps it: a journal record and the answer it gives.

``JobRecord`` (from the journal) is the truth; ``answer_for`` turns it into the
GetTaskResponse that GetTask returns, and ``with_resource`` folds a connector's report into
a new record. Records are immutable: every change makes a new one, journalled before use.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from connectors import Phase, is_terminal
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import TaskLog
from flyteproto.flyteidl2.task import Outputs
from flyteproto.google.protobuf import Struct

from ..journal import JobRecord

__all__ = [
    "Observation",
    "Observer",
    "answer_for",
    "encode_answer",
    "link_from_json",
    "link_to_json",
    "observation_of",
    "observed",
    "with_observation",
    "with_phase",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """What one poll saw, in journal form (log links and custom info as JSON text)."""

    phase: int
    message: str
    log_links: str
    outputs: bytes | None
    custom_info: str | None


def observed(resource: pb.Resource) -> Observation:
    """Journal form of a Resource message (converted from the connector's report)."""
    return Observer().observe(resource)


class Observer:
    """``observed`` with a memory: one per actor, for the poll loop.

    Hot path (every poll of every job). betterproto2's ``to_dict`` costs about 160 us for one
    TaskLog (it resolves type hints on every call): most of a poll. A job's log links and
    custom info rarely change between polls, so their JSON is kept with a key made of their
    field values; a report whose key matches reuses it. The key holds every field, so a change
    (or a connector that mutates and re-sends one object) is always seen.
    """

    __slots__ = ("_info", "_links")

    def __init__(self, record: JobRecord | None = None) -> None:
        """``record``: the job's journalled state, remembered as the last report (so the
        first poll after a restart costs what any other does when nothing changed)."""
        self._links: tuple[object, str] | None = None
        self._info: tuple[bytes, str] | None = None
        if record is not None:
            self._remember(record)

    def _remember(self, record: JobRecord) -> None:
        try:
            links = [link_from_json(item) for item in json.loads(record.log_links)]
            self._links = (tuple(_fields_of(link) for link in links), record.log_links)
            if record.custom_info is not None:
                info = Struct.from_dict(json.loads(record.custom_info))
                self._info = (bytes(info), record.custom_info)
        except Exception:  # a memory is an optimisation: start without one
            self._links = self._info = None

    def observe(self, resource: pb.Resource) -> Observation:
        return Observation(
            phase=int(resource.phase),
            message=resource.message,
            log_links=self._links_json(resource.log_links),
            outputs=bytes(resource.outputs) if resource.outputs is not None else None,
            custom_info=(
                self._info_json(resource.custom_info) if resource.custom_info is not None else None
            ),
        )

    def _links_json(self, links: list[TaskLog]) -> str:
        key = tuple(_fields_of(link) for link in links)
        try:
            if self._links is not None and self._links[0] == key:
                return self._links[1]
        except TypeError:  # a field value that cannot be compared: no memory
            return _links_json(links)
        text = _links_json(links)
        self._links = (key, text)
        return text

    def _info_json(self, info: Struct) -> str:
        key = bytes(info)
        if self._info is not None and self._info[0] == key:
            return self._info[1]
        text = json.dumps(info.to_dict(), sort_keys=True)
        self._info = (key, text)
        return text


#: JSON keys of a TaskLog whose values are plain strings and booleans, and their fields.
_PLAIN_LINK_FIELDS = {
    "uri": "uri",
    "name": "name",
    "iconUri": "icon_uri",
    "ready": "ready",
    "showWhilePending": "show_while_pending",
    "hideOnceFinished": "hide_once_finished",
}


def link_from_json(item: dict[str, Any]) -> TaskLog:
    """``TaskLog.from_dict``, fast for the usual link (name, uri and flags).

    from_dict converts the casing of every key with regular expressions: 15 us a link, a
    good share of resuming 100,000 jobs; the constructor takes 2.5 us. Anything else (an
    enum, a ttl) goes through from_dict.
    """
    if all(key in _PLAIN_LINK_FIELDS for key in item):
        return TaskLog(**{_PLAIN_LINK_FIELDS[key]: value for key, value in item.items()})
    return TaskLog.from_dict(item)


#: The inverse of _PLAIN_LINK_FIELDS.
_PLAIN_LINK_KEYS = {field: key for key, field in _PLAIN_LINK_FIELDS.items()}


def link_to_json(link: TaskLog) -> dict[str, Any]:
    """``link.to_dict()``, fast for the usual link (name, uri and flags).

    to_dict resolves the class's type hints on every call: 160 us a link, most of a job's
    first poll. Every other field (an enum, a ttl, any field added later) must be unset;
    otherwise this is to_dict. Unset fields are left out, as proto3 JSON does.
    """
    item: dict[str, Any] = {}
    for field in dataclasses.fields(link):
        value = getattr(link, field.name)
        key = _PLAIN_LINK_KEYS.get(field.name)
        if key is not None:
            if value:
                item[key] = value
        elif not (value is None or (isinstance(value, enum.Enum) and value.value == 0)):
            return link.to_dict()
    return item


def _fields_of(link: TaskLog) -> tuple[object, ...]:
    return tuple(getattr(link, field.name) for field in dataclasses.fields(link))


def _links_json(links: list[TaskLog]) -> str:
    return json.dumps([link_to_json(link) for link in links], sort_keys=True)


def observation_of(record: JobRecord) -> Observation:
    return Observation(
        record.phase, record.message, record.log_links, record.outputs, record.custom_info
    )


def with_observation(record: JobRecord, seen: Observation, *, now: float) -> JobRecord:
    """``record`` updated with what a poll saw; ``finished_at`` set on a terminal phase."""
    finished_at = record.finished_at
    if finished_at is None and is_terminal(Phase(seen.phase)):
        finished_at = now
    return dataclasses.replace(
        record,
        phase=seen.phase,
        message=seen.message,
        log_links=seen.log_links,
        outputs=seen.outputs,
        custom_info=seen.custom_info,
        updated_at=now,
        finished_at=finished_at,
    )


def with_phase(record: JobRecord, phase: Phase, message: str, *, now: float) -> JobRecord:
    seen = dataclasses.replace(observation_of(record), phase=int(phase), message=message)
    return with_observation(record, seen, now=now)


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

    Hot path (the first GetTask after each change of every job): betterproto2 takes ~120 us
    to build and serialise the answer; this takes a few. The fields go in betterproto2's
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
