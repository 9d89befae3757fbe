"""Structured logs: key=value and JSON lines, job identity on every line about a job, and no
secret value in any line, even at DEBUG (a real server, secrets in every request).
"""

from __future__ import annotations

import io
import json
import logging
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trio

from supervisor.observe import (
    JobFilter,
    JsonFormatter,
    KeyValueFormatter,
    bind_job,
    configure_logging,
    job_fields,
)
from tests.support.operators import CALL_TIMEOUT, SAMPLE_ARGS, category, create_request, stub
from tests.support.server import ServerProcess


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own whose lines go, formatted, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(JobFilter())
    logger = logging.getLogger(f"test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, buffer, handler
    logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_key_value_lines_quote_what_needs_quoting(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(KeyValueFormatter())
    logger.warning('said "hi"\nthen left', extra=job_fields("j1", "Echo connector"))
    [line] = lines(buffer)
    assert " level=warning " in line
    assert f" logger={logger.name} " in line
    assert ' job_id=j1 connector="Echo connector" ' in line
    assert line.endswith(' msg="said \\"hi\\"\\nthen left"')


def test_a_traceback_stays_on_one_line(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(KeyValueFormatter())
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    [line] = lines(buffer)
    assert 'exc="Traceback' in line
    assert "ValueError: bad" in line


def test_json_lines_carry_the_same_fields(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(JsonFormatter())
    logger.info("polling %s", "x", extra=job_fields("j1", "Echo connector"))
    [line] = lines(buffer)
    fields = json.loads(line)
    assert fields["level"] == "info"
    assert fields["msg"] == "polling x"
    assert (fields["job_id"], fields["connector"]) == ("j1", "Echo connector")
    assert fields["ts"].endswith("Z")


async def test_a_bound_job_names_every_line_of_its_task_its_children_and_threads(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(JsonFormatter())

    async def actor() -> None:
        bind_job("j1", "Echo connector")
        logger.info("in the task")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: trio.to_thread.run_sync(logger.info, "in a thread"))

    async def bystander() -> None:
        logger.info("elsewhere")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor)
        nursery.start_soon(bystander)
    records = {r["msg"]: r for r in map(json.loads, lines(buffer))}
    assert records["in the task"]["job_id"] == "j1"
    assert records["in a thread"]["connector"] == "Echo connector"
    assert "job_id" not in records["elsewhere"]


def test_configure_logging_keeps_wire_dumps_out_even_at_debug() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("DEBUG", "json", io.StringIO())
        assert logging.getLogger("hpack").getEffectiveLevel() >= logging.INFO
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("hpack").setLevel(logging.NOTSET)
        logging.getLogger("h2").setLevel(logging.NOTSET)


# -- a real server at DEBUG ------------------------------------------------------------------


@pytest.mark.slow
def test_no_secret_value_reaches_the_logs_even_at_debug(tmp_path: Path) -> None:
    secret, config = f"secret-{uuid.uuid4().hex}", f"config-{uuid.uuid4().hex}"
    secrets, configs = {"api_key": secret}, {"region": config}
    server = ServerProcess(
        [*SAMPLE_ARGS, "--log-level", "DEBUG", "--log-format", "json"], log_dir=tmp_path
    )
    with server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            api = stub(channel)
            metadata = [("authorization", f"Bearer {secret}")]
            for task_type in ("echo", "plain"):
                meta = api.CreateTask(
                    create_request(task_type, secrets=secrets, configs=configs, job_id="p"),
                    timeout=CALL_TIMEOUT,
                    metadata=metadata,
                ).resource_meta
                request = _get(task_type, meta, secret)
                api.GetTask(request, timeout=CALL_TIMEOUT, metadata=metadata)
                api.DeleteTask(_delete(task_type, meta, secret), timeout=CALL_TIMEOUT)
            with pytest.raises(grpc.RpcError):
                api.CreateTask(
                    create_request("broken", secrets=secrets, configs=configs), timeout=CALL_TIMEOUT
                )
        server.send_signal(signal.SIGTERM)
        assert server.wait(CALL_TIMEOUT) == 0
    output = "".join(p.read_text() for p in sorted(tmp_path.glob("*.log")))
    journal = (tmp_path / "journal.db").read_bytes()
    assert secret not in output
    assert config not in output
    assert secret.encode() not in journal
    assert config.encode() not in journal
    records = [json.loads(line) for line in server.stderr_text().splitlines()]
    assert any(r["level"] == "debug" for r in records)  # DEBUG really was on
    about_jobs = [r for r in records if "job_id" in r]
    assert all(r["connector"] for r in about_jobs)
    [failed] = [r for r in records if "create failed" in r["msg"]]
    assert failed["connector"] == "Broken connector"
    assert failed["job_id"] in failed["msg"]


def _get(task_type: str, meta: bytes, secret: str) -> object:
    from flyteidl2.connector import connector_pb2
    from flyteidl2.core import security_pb2

    return connector_pb2.GetTaskRequest(
        task_category=category(task_type),
        resource_meta=meta,
        connection=security_pb2.Connection(secrets={"api_key": secret}),
    )


def _delete(task_type: str, meta: bytes, secret: str) -> object:
    from flyteidl2.connector import connector_pb2
    from flyteidl2.core import security_pb2

    return connector_pb2.DeleteTaskRequest(
        task_category=category(task_type),
        resource_meta=meta,
        connection=security_pb2.Connection(secrets={"api_key": secret}),
    )
