"""``python -m supervisor run TEMPLATE_FILE``: run one connector task locally, no cluster.

The connector is the one the registry (entry points and ``--modules``) has for the
template's task type and version; the run itself is ``connectors.run_local``. SIGINT
(Ctrl-C) and SIGTERM cancel the external job before the command exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
import trio_asyncio
from flyteidl2.core import tasks_pb2
from google.protobuf import json_format

from connectors import (
    RUN_LOCAL_POLL_INTERVAL,
    AsyncConnector,
    BlobRef,
    ConnectorNotFound,
    Phase,
    Resource,
    StructuredDatasetRef,
    load_connectors,
    run_local,
)
from flyteproto.flyteidl2.core import (
    BlobTypeBlobDimensionality,
    LiteralType,
    SimpleType,
    TaskTemplate,
)

from ._settings import add_connector_arguments

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "InvalidRunInput",
    "add_run_arguments",
    "read_inputs",
    "read_template",
    "run_command",
]

#: Exit codes: 0 when the job succeeded; these otherwise.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class InvalidRunInput(ValueError):
    """A template file or inputs that cannot be read; the message says why."""


def add_run_arguments(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """The flags of ``run``; as for ``serve``, ``--modules`` and ``--entry-points`` default
    to SUPERVISOR_MODULES and SUPERVISOR_ENTRY_POINTS from ``environ`` (the process's)."""
    parser.add_argument(
        "template",
        metavar="TEMPLATE_FILE",
        help="the task's TaskTemplate: protobuf JSON, or binary protobuf",
    )
    parser.add_argument(
        "--inputs",
        metavar="JSON_OR_FILE",
        help="the inputs: a JSON object, or a file holding one",
    )
    add_connector_arguments(parser, environ)
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=RUN_LOCAL_POLL_INTERVAL,
        metavar="SECONDS",
        help="seconds between two polls (default %(default)s)",
    )
    parser.add_argument(
        "--output-prefix",
        default="",
        metavar="URI",
        help="where the task may write its outputs (passed to the connector)",
    )


def run_command(args: argparse.Namespace) -> int:
    """Run the task; the exit code says how it ended (0: SUCCEEDED)."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        template = read_template(Path(args.template))
        inputs = read_inputs(args.inputs, template)
    except (OSError, InvalidRunInput) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        connector = _connector_for(template, args)
    except ConnectorNotFound as exc:
        print(f"error: {exc} (see --modules)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        print(f"error: cannot load connectors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        resource = trio.run(
            _run, connector, template, inputs, args.poll_interval, args.output_prefix
        )
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if resource is None:
        return EXIT_INTERRUPTED
    return 0 if resource.phase == Phase.SUCCEEDED else EXIT_FAILED


# -- reading the template and the inputs -------------------------------------------------


def read_template(path: Path) -> TaskTemplate:
    """A TaskTemplate from a file: protobuf JSON (what ``MessageToJson`` writes), or binary.

    Errors: OSError; InvalidRunInput when it does not parse or names no task type.
    """
    data = path.read_bytes()
    if data.lstrip()[:1] == b"{":
        try:
            official = json_format.Parse(data, tasks_pb2.TaskTemplate())
        except json_format.ParseError as exc:
            raise InvalidRunInput(f"{path}: not a TaskTemplate in protobuf JSON: {exc}") from None
        data = official.SerializeToString()
    try:
        template = TaskTemplate.parse(data)
    except Exception as exc:
        raise InvalidRunInput(f"{path}: not a TaskTemplate: {exc}") from None
    if not template.type:
        raise InvalidRunInput(f"{path}: the TaskTemplate has no task type")
    return template


def read_inputs(value: str | None, template: TaskTemplate) -> dict[str, Any]:
    """Native inputs from a JSON object (or a file holding one).

    JSON has no datetimes or datasets: a value is adapted to the type the template's
    interface declares for it (an ISO string for a datetime, seconds for a duration, a URI
    for a structured dataset or a blob, an int for a float).
    Errors: OSError; InvalidRunInput.
    """
    if value is None:
        return {}
    text = Path(value).read_text() if os.path.isfile(value) else value
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRunInput(f"--inputs is neither a file nor JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidRunInput(f"--inputs must be a JSON object, not {type(parsed).__name__}")
    declared = _declared_types(template)
    return {name: _adapt(name, item, declared.get(name)) for name, item in parsed.items()}


def _declared_types(template: TaskTemplate) -> dict[str, LiteralType]:
    interface = template.interface
    if interface is None or interface.inputs is None:
        return {}
    return {
        entry.key: entry.value.type
        for entry in interface.inputs.variables
        if entry.value is not None and entry.value.type is not None
    }


def _adapt(name: str, item: Any, declared: LiteralType | None) -> Any:
    if declared is None:
        return item
    try:
        if declared.structured_dataset_type is not None and isinstance(item, str):
            return StructuredDatasetRef(uri=item, format=declared.structured_dataset_type.format)
        if declared.blob is not None and isinstance(item, str):
            multipart = declared.blob.dimensionality == BlobTypeBlobDimensionality.MULTIPART
            return BlobRef(uri=item, format=declared.blob.format, multipart=multipart)
        if declared.simple == SimpleType.FLOAT and isinstance(item, int):
            return float(item)
        if declared.simple == SimpleType.DATETIME and isinstance(item, str):
            return dt.datetime.fromisoformat(item.replace("Z", "+00:00"))
        if declared.simple == SimpleType.DURATION and isinstance(item, int | float):
            return dt.timedelta(seconds=item)
    except ValueError as exc:
        raise InvalidRunInput(f"input {name!r}: {exc}") from None
    return item


# -- running -------------------------------------------------------------------------------


def _connector_for(template: TaskTemplate, args: argparse.Namespace) -> AsyncConnector[Any]:
    registry = load_connectors(args.entry_points, [m for m in args.modules if m])
    return registry.get(template.type, template.task_type_version)


async def _run(
    connector: AsyncConnector[Any],
    template: TaskTemplate,
    inputs: dict[str, Any],
    poll_interval: float,
    output_prefix: str,
) -> Resource | None:
    """The run, under a trio-asyncio loop (for flyte-sdk connectors); None if interrupted."""
    resource: Resource | None = None
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        run_scope = trio.CancelScope()
        await nursery.start(_cancel_on_signal, run_scope)
        with run_scope:
            resource = await run_local(
                connector,
                template,
                inputs,
                output_prefix=output_prefix,
                poll_interval=poll_interval,
            )
        nursery.cancel_scope.cancel()
    return resource


async def _cancel_on_signal(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Turn SIGINT and SIGTERM into a cancel of ``scope`` (run_local then cancels the job)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if scope.cancel_called:
                print("still cancelling the external job...", file=sys.stderr, flush=True)
            scope.cancel()
