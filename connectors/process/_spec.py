"""What a process task asks for: the command, its environment and working directory."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteproto.flyteidl2.core import TaskTemplate

__all__ = ["JobSpec", "encode_inputs"]


@dataclass(frozen=True)
class JobSpec:
    """The command of one job, as stored in its ``spec.json``.

    ``cwd`` is absolute: a relative ``cwd`` in the template is taken from the supervisor's
    working directory at create time, and no ``cwd`` means that directory itself.
    """

    command: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    output_prefix: str = ""

    @classmethod
    def from_template(cls, template: TaskTemplate, output_prefix: str = "") -> JobSpec:
        """Read ``template.custom``: ``{"command": [argv...], "env": {...}, "cwd": "..."}``.

        Errors: ValueError saying what is missing or malformed.
        """
        custom = template.custom.to_dict() if template.custom is not None else {}
        if not isinstance(custom, dict):
            raise ValueError("process task: task_template.custom must be a Struct")
        command = custom.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(arg, str) for arg in command)
        ):
            raise ValueError(
                "process task: task_template.custom['command'] must be a non-empty list of "
                f"strings (the argv of the command), got {command!r}"
            )
        env = custom.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError(
                "process task: task_template.custom['env'] must map strings to strings, "
                f"got {env!r}"
            )
        cwd = custom.get("cwd") or ""
        if not isinstance(cwd, str):
            raise ValueError(
                f"process task: task_template.custom['cwd'] must be a string, got {cwd!r}"
            )
        return cls(
            command=tuple(command),
            env=dict(env),
            cwd=os.path.abspath(cwd or os.curdir),
            output_prefix=output_prefix,
        )

    def to_json(self) -> bytes:
        value = {
            "command": list(self.command),
            "env": dict(self.env),
            "cwd": self.cwd,
            "output_prefix": self.output_prefix,
        }
        return json.dumps(value, indent=2).encode()


def encode_inputs(inputs: Mapping[str, Any] | None) -> bytes:
    """The native inputs as JSON; values JSON lacks are written as their usual text form."""
    return json.dumps(dict(inputs or {}), default=_json_default, indent=2).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)
