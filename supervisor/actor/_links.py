"""A job's log links (flyteidl2 ``TaskLog``) to and from the journal's JSON form."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
from typing import Any

from flyteproto.flyteidl2.core import TaskLog

__all__ = ["fields_of", "link_from_json", "link_to_json", "links_json"]


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

    from_dict converts the casing of every key with regular expressions, a good share of
    resuming many jobs; the constructor does none of that. Anything else (an
    enum, a ttl) goes through from_dict.
    """
    if all(key in _PLAIN_LINK_FIELDS for key in item):
        return TaskLog(**{_PLAIN_LINK_FIELDS[key]: value for key, value in item.items()})
    return TaskLog.from_dict(item)


#: The inverse of _PLAIN_LINK_FIELDS.
_PLAIN_LINK_KEYS = {field: key for key, field in _PLAIN_LINK_FIELDS.items()}


def link_to_json(link: TaskLog) -> dict[str, Any]:
    """``link.to_dict()``, fast for the usual link (name, uri and flags).

    to_dict resolves the class's type hints on every call: most of a job's first poll.
    Every other field (an enum, a ttl, any field added later) must be unset; otherwise
    this is to_dict. Unset fields are left out, as proto3 JSON does.
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


def fields_of(link: TaskLog) -> tuple[object, ...]:
    """Every field value of ``link``: the key of the observer's memory (every poll, every
    link: the field names are looked up once per type, not by ``dataclasses.fields``)."""
    return tuple(map(link.__getattribute__, _field_names(type(link))))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def links_json(links: list[TaskLog]) -> str:
    return json.dumps([link_to_json(link) for link in links], sort_keys=True)
