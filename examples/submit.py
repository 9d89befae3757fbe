"""A tiny Propeller stand-in for demos, built on the official flyteidl2 grpcio stubs.

    python examples/submit.py sleep SECONDS   # create a local process job that sleeps
    python examples/submit.py status          # GetTask for the last job created
    python examples/submit.py cancel          # DeleteTask for it

The last job's resource_meta is kept in .supervisor/last-job (as Propeller would keep it).
Set SUPERVISOR_ADDRESS to reach a server other than 127.0.0.1:8000.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import grpc
from flyteidl2.connector import connector_pb2 as c
from flyteidl2.connector import service_pb2_grpc
from flyteidl2.core import execution_pb2, identifier_pb2, tasks_pb2
from google.protobuf import struct_pb2

STATE = Path(".supervisor/last-job")
CATEGORY = c.TaskCategory(name="process", version=0)


def main(argv: list[str]) -> int:
    address = os.environ.get("SUPERVISOR_ADDRESS", "127.0.0.1:8000")
    stub = service_pb2_grpc.AsyncConnectorServiceStub(grpc.insecure_channel(address))
    command = argv[0] if argv else "status"
    if command == "sleep":
        seconds = float(argv[1]) if len(argv) > 1 else 30.0
        custom = struct_pb2.Struct()
        script = (
            f'echo "sleeping {seconds}s"; sleep {seconds}; '
            f'echo \'{{"slept": {seconds}}}\' > "$FLYTE_OUTPUTS_FILE"'
        )
        custom.update({"command": ["sh", "-c", script]})
        execution = identifier_pb2.TaskExecutionIdentifier(
            task_id=identifier_pb2.Identifier(
                project="demo", domain="development", name=uuid.uuid4().hex
            )
        )
        response = stub.CreateTask(
            c.CreateTaskRequest(
                template=tasks_pb2.TaskTemplate(type="process", custom=custom),
                output_prefix="file:///tmp/demo-outputs",
                task_execution_metadata=c.TaskExecutionMetadata(task_execution_id=execution),
            )
        )
        STATE.parent.mkdir(parents=True, exist_ok=True)
        STATE.write_bytes(response.resource_meta)
        print(f"created: {response.resource_meta.decode()}")
        return 0
    meta = STATE.read_bytes()
    if command == "status":
        resource = stub.GetTask(
            c.GetTaskRequest(resource_meta=meta, task_category=CATEGORY)
        ).resource
        phase = execution_pb2.TaskExecution.Phase.Name(resource.phase)
        print(f"phase {phase}: {resource.message}")
        for link in resource.log_links:
            print(f"  log {link.name}: {link.uri}")
        for literal in resource.outputs.literals:
            print(f"  output {literal.name} = {literal.value.scalar.primitive}")
        return 0
    if command == "cancel":
        stub.DeleteTask(c.DeleteTaskRequest(resource_meta=meta, task_category=CATEGORY))
        print("cancel requested")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
