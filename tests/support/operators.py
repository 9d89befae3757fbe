"""Helpers for the operators' tests: requests through the official client, metric scrapes,
and the CLI run as a separate process (as an operator runs it).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from flyteidl2.connector import connector_pb2 as pb
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import identifier_pb2, literals_pb2, security_pb2, tasks_pb2
from flyteidl2.task import common_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import REPO_ROOT

__all__ = [
    "CALL_TIMEOUT",
    "SAMPLE_ARGS",
    "Samples",
    "category",
    "create_request",
    "run_cli",
    "sample",
    "scrape",
    "stub",
]

SAMPLE_ARGS = ["--entry-points", "false", "--modules", "tests.support.sample_connectors"]
#: Deadline of every call: generous, so that only a hung server trips it.
CALL_TIMEOUT = 10.0
#: How long a CLI run may take.
CLI_TIMEOUT = 60.0

Message = Any
#: {(metric sample name, frozenset of label items): value}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def stub(channel: Any) -> Any:
    return service_pb2_grpc.AsyncConnectorServiceStub(channel)


def category(name: str, version: int = 0) -> Message:
    return pb.TaskCategory(name=name, version=version)


def create_request(
    task_type: str,
    *,
    name: str | None = None,
    secrets: Mapping[str, str] | None = None,
    configs: Mapping[str, str] | None = None,
    **custom: Any,
) -> Message:
    """A CreateTask for a new task execution (``name``: its task name, random by default)."""
    template = tasks_pb2.TaskTemplate(type=task_type)
    if custom:
        template.custom.update(custom)
    execution = identifier_pb2.TaskExecutionIdentifier(
        task_id=identifier_pb2.Identifier(project="p", domain="d", name=name or uuid.uuid4().hex)
    )
    connection = None
    if secrets or configs:
        connection = security_pb2.Connection(
            secrets=dict(secrets or {}), configs=dict(configs or {})
        )
    return pb.CreateTaskRequest(
        template=template,
        inputs=common_pb2.Inputs(
            literals=[
                common_pb2.NamedLiteral(
                    name="n",
                    value=literals_pb2.Literal(
                        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=42))
                    ),
                )
            ]
        ),
        output_prefix="s3://bucket/prefix",
        task_execution_metadata=pb.TaskExecutionMetadata(task_execution_id=execution),
        connection=connection,
    )


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus endpoint."""
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def run_cli(
    args: Sequence[str], *, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m supervisor ARGS`` in its own process; stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=REPO_ROOT,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
