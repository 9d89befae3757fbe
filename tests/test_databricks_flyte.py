"""flyteplugins-databricks, unmodified, served through the flyte-sdk adapter by a real server
process, against the fake Databricks workspace (over https: the plugin speaks nothing else),
with the template Flyte writes for a Databricks task; the official grpcio client drives it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from flyteidl2.connector import connector_pb2, service_pb2_grpc
from flyteidl2.core import execution_pb2, identifier_pb2, security_pb2, tasks_pb2

from tests.support.fake_databricks import FakeDatabricks, databricks_template
from tests.support.server import ServerProcess
from tests.support.tls import localhost_tls

if importlib.util.find_spec("flyteplugins.databricks") is None:  # not imported here: the
    pytest.skip("flyteplugins-databricks is not installed", allow_module_level=True)  # server does

pytestmark = pytest.mark.slow

ARGS = ["--entry-points", "false", "--modules", "tests.support.databricks_flyte"]
CATEGORY = connector_pb2.TaskCategory(name="databricks", version=0)
WAIT_LIMIT = 20.0


async def phase_of(stub: Any, meta: bytes, token: str) -> Any:
    request = connector_pb2.GetTaskRequest(
        resource_meta=meta,
        task_category=CATEGORY,
        connection=security_pb2.Connection(secrets={"databricks_token": token}),
    )
    answer = await trio.to_thread.run_sync(lambda: stub.GetTask(request, timeout=10))
    return answer.resource


async def wait_for_phase(stub: Any, meta: bytes, token: str, phase: int) -> Any:
    with trio.fail_after(WAIT_LIMIT):
        while True:
            resource = await phase_of(stub, meta, token)
            if resource.phase == phase:
                return resource
            await trio.sleep(0.05)


async def test_a_databricks_run_end_to_end_through_the_unmodified_plugin(tmp_path: Path) -> None:
    context, cert = localhost_tls(tmp_path)
    fake = FakeDatabricks()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: fake.serve(tls=context, task_status=task_status)
        )
        instance = url.removeprefix("https://")
        server = ServerProcess(ARGS, log_dir=tmp_path / "logs", env={"SSL_CERT_FILE": str(cert)})
        with server:
            await trio.to_thread.run_sync(server.start)
            channel = grpc.insecure_channel(server.address)
            stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
            template = tasks_pb2.TaskTemplate.FromString(bytes(databricks_template(instance)))
            request = connector_pb2.CreateTaskRequest(
                template=template,
                output_prefix="s3://bucket/out",
                task_execution_metadata=connector_pb2.TaskExecutionMetadata(
                    task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                        task_id=identifier_pb2.Identifier(project="p", domain="d", name="spark")
                    )
                ),
                connection=security_pb2.Connection(secrets={"databricks_token": fake.token}),
            )
            created = await trio.to_thread.run_sync(lambda: stub.CreateTask(request, timeout=10))
            run = fake.only_run()
            # flyte-sdk's own resource_meta (what its service would return), with our MAC.
            meta = json.loads(created.resource_meta)
            assert meta.pop("_mac").startswith("v1.")
            assert meta == {
                "databricks_instance": instance,
                "run_id": str(run.run_id),
            }
            assert run.request["new_cluster"]["docker_image"] == {"url": "ghcr.io/acme/spark:1"}
            assert run.request["spark_python_task"]["parameters"][0] == "a0"
            assert fake.requests[0].authorization == f"Bearer {fake.token}"

            fake.set_state(run.run_id, "RUNNING", state_message="running")
            resource = await wait_for_phase(
                stub, created.resource_meta, fake.token, execution_pb2.TaskExecution.RUNNING
            )
            assert [link.name for link in resource.log_links] == ["Databricks Console"]
            fake.set_state(run.run_id, "TERMINATED", "SUCCESS", "done")
            resource = await wait_for_phase(
                stub, created.resource_meta, fake.token, execution_pb2.TaskExecution.SUCCEEDED
            )
            assert resource.message == "done"
            assert fake.calls["submit"] == 1

            # An abort: DeleteTask cancels the second run once, through the plugin.
            request.task_execution_metadata.task_execution_id.task_id.name = "spark-2"
            second = await trio.to_thread.run_sync(lambda: stub.CreateTask(request, timeout=10))
            delete = connector_pb2.DeleteTaskRequest(
                resource_meta=second.resource_meta,
                task_category=CATEGORY,
                connection=request.connection,
            )
            for _ in range(3):
                await trio.to_thread.run_sync(lambda: stub.DeleteTask(delete, timeout=10))
            with trio.fail_after(WAIT_LIMIT):
                while True:  # polling the fake, which runs in this Trio run
                    if fake.calls["cancel"]:
                        break
                    await trio.sleep(0.05)
            assert fake.calls["cancel"] == 1
            channel.close()
            assert await trio.to_thread.run_sync(server.stop) == 0
        nursery.cancel_scope.cancel()
