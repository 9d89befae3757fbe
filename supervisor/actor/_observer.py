"""What a poll saw, in journal form, and the actor's memory of its last conversion."""

from __future__ import annotations

import dataclasses
import json

from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import TaskLog
from flyteproto.google.protobuf import Struct

from ..journal import JobRecord
from ._links import fields_of, link_from_json, links_json

__all__ = ["Observation", "Observer", "observation_of", "observed"]


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

    Hot path (every poll of every job). betterproto2's ``to_dict`` resolves type hints on
    every call, which makes converting a TaskLog most of a poll's cost. A job's log links and
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
            self._links = (tuple(fields_of(link) for link in links), record.log_links)
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
        key = tuple(fields_of(link) for link in links)
        try:
            if self._links is not None and self._links[0] == key:
                return self._links[1]
        except TypeError:  # a field value that cannot be compared: no memory
            return links_json(links)
        text = links_json(links)
        self._links = (key, text)
        return text

    def _info_json(self, info: Struct) -> str:
        key = bytes(info)
        if self._info is not None and self._info[0] == key:
            return self._info[1]
        text = json.dumps(info.to_dict(), sort_keys=True)
        self._info = (key, text)
        return text


def observation_of(record: JobRecord) -> Observation:
    return Observation(
        record.phase, record.message, record.log_links, record.outputs, record.custom_info
    )
