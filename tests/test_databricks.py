"""The Databricks connector against a fake Databricks workspace over real HTTP.

The fake (``tests/support/fake_databricks.py``) speaks the Jobs API 2.1 run endpoints on 127.0.0.1
in each test's own Trio run; tests move its runs through their states and inject faults.
Time is real (sockets are), so waits are bounded by deadlines, never fixed sleeps.
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import ModuleType
from typing import Any

import pytest
import trio

import connectors.databricks
from connectors import JobNotFound, PermanentError, Phase
from connectors.databricks import (
    DatabricksConnector,
    DatabricksRequestError,
    DatabricksRun,
    DatabricksTransientError,
)
from connectors.databricks._errors import parse_retry_after
from tests.support.fake_databricks import ARGS, FakeDatabricks, databricks_template

KEY = "0123456789abcdef0123456789abcdef"  # what the supervisor passes: 32 hex characters


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeDatabricks:
    service = FakeDatabricks()
    await nursery.start(service.serve)
    return service


@pytest.fixture
def connector() -> DatabricksConnector:
    return DatabricksConnector(request_timeout=5.0)


def auth(fake: FakeDatabricks) -> dict[str, Any]:
    """The connection kwargs the supervisor passes: the request's secrets and configs."""
    return {"databricks_token": fake.token}


async def submit(
    connector: DatabricksConnector, fake: FakeDatabricks, key: str = KEY, **kwargs: Any
) -> DatabricksRun:
    return await connector.create(
        databricks_template(fake.url),
        "s3://bucket/out",
        idempotency_key=key,
        **auth(fake),
        **kwargs,
    )


# -- create --------------------------------------------------------------------------------


async def test_create_submits_the_run_flyte_would(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    meta = await submit(connector, fake)
    run = fake.only_run()
    assert meta == DatabricksRun(databricks_instance=fake.url, run_id=str(run.run_id))
    assert run.request == {
        "run_name": "nightly",
        "timeout_seconds": 3600,
        "new_cluster": {
            "spark_version": "13.3.x-scala2.12",
            "num_workers": 2,
            "docker_image": {"url": "ghcr.io/acme/spark:1"},
            "spark_conf": {"spark.driver.memory": "1g"},
            "spark_env_vars": {"FLYTE_INTERNAL_EXECUTION_ID": "e1"},
        },
        "git_source": {
            "git_url": "https://github.com/flyteorg/flytetools",
            "git_provider": "gitHub",
            "git_commit": "194364210c47c49ce66c419e8fb68d6f9c06fd7e",
        },
        "spark_python_task": {
            "python_file": "flyteplugins/databricks/entrypoint.py",
            "source": "GIT",
            "parameters": ARGS,
        },
        "idempotency_token": KEY,
    }
    assert isinstance(run.request["new_cluster"]["num_workers"], int)


async def test_create_keeps_an_existing_cluster_and_the_users_git_source(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    git = {"git_url": "https://example.com/repo", "git_provider": "gitLab", "git_branch": "main"}
    conf = {"existing_cluster_id": "0101-abc", "git_source": git, "python_file": "run.py"}
    template = databricks_template(fake.url, databricksConf=conf)
    await connector.create(template, "s3://out", idempotency_key=KEY, **auth(fake))
    request = fake.only_run().request
    assert "new_cluster" not in request
    assert request["existing_cluster_id"] == "0101-abc"
    assert request["git_source"] == git
    assert request["spark_python_task"]["python_file"] == "run.py"
    assert "python_file" not in request
    assert request["run_name"] == "wf.spark_task"  # the task's name when the user gave none


async def test_same_idempotency_key_gives_the_same_run(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    first = await submit(connector, fake)
    again = await submit(connector, fake)
    other = await submit(connector, fake, key="f" * 32)
    assert first == again != other
    assert fake.calls["submit"] == 3
    assert len(fake.runs) == 2


async def test_lost_submit_response_is_retried_into_the_same_run(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    fake.fail_next("submit", 503, retry_after="0", applied=True)
    meta = await submit(connector, fake)
    assert fake.calls["submit"] == 2
    assert meta.run_id == str(fake.only_run().run_id)


async def test_create_honours_retry_after_on_429(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    fake.fail_next("submit", 429, retry_after="0.3")
    start = trio.current_time()
    await submit(connector, fake)
    assert trio.current_time() - start >= 0.3
    assert fake.calls["submit"] == 2
    assert [r.status for r in fake.requests] == [429, 200]


async def test_create_gives_up_after_its_attempts(fake: FakeDatabricks) -> None:
    connector = DatabricksConnector(create_attempts=2)
    fake.fail_next("submit", 503, retry_after="0")
    fake.fail_next("submit", 503, retry_after="0")
    with pytest.raises(DatabricksTransientError) as info:
        await submit(connector, fake)
    assert info.value.status == 503
    assert fake.calls["submit"] == 2
    assert fake.runs == {}


async def test_create_does_not_retry_past_the_callers_deadline(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    fake.fail_next("submit", 429, retry_after="30")
    with trio.fail_after(10), pytest.raises(DatabricksTransientError) as info:
        await submit(connector, fake)
    assert info.value.retry_after == 30
    assert fake.calls["submit"] == 1


async def test_create_rejected_by_databricks_is_permanent(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    fake.fail_next("submit", 400, message="Invalid spark_version")
    with pytest.raises(DatabricksRequestError, match="Invalid spark_version") as info:
        await submit(connector, fake)
    assert isinstance(info.value, PermanentError)
    assert (info.value.status, info.value.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert fake.calls["submit"] == 1


@pytest.mark.parametrize(
    ("custom", "error"),
    [
        ({"databricksConf": None}, "no databricksConf"),
        ({"databricksConf": {"run_name": "x"}}, "existing_cluster_id or new_cluster"),
    ],
)
async def test_create_from_an_unusable_template_is_permanent(
    connector: DatabricksConnector, fake: FakeDatabricks, custom: dict[str, Any], error: str
) -> None:
    template = databricks_template(fake.url, **custom)
    with pytest.raises(PermanentError, match=error):
        await connector.create(template, "s3://out", idempotency_key=KEY, **auth(fake))
    assert fake.calls["submit"] == 0


async def test_instance_may_come_from_the_connection_config(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    template = databricks_template(None)
    meta = await connector.create(
        template, "s3://out", idempotency_key=KEY, databricks_instance=fake.url, **auth(fake)
    )
    assert meta.databricks_instance == fake.url
    assert len(fake.runs) == 1


async def test_missing_instance_or_token_is_permanent(
    connector: DatabricksConnector, fake: FakeDatabricks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLYTE_DATABRICKS_INSTANCE", raising=False)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    with pytest.raises(PermanentError, match="no Databricks instance"):
        await connector.create(databricks_template(None), "s3://out", **auth(fake))
    with pytest.raises(PermanentError, match="databricks_token"):
        await connector.create(databricks_template(fake.url), "s3://out")
    assert fake.calls["submit"] == 0


# -- get: the state model ------------------------------------------------------------------


async def test_run_goes_from_pending_to_running_to_success(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    meta = await submit(connector, fake)
    run = fake.only_run()
    pending = await connector.get(meta, **auth(fake))
    assert pending.phase == Phase.INITIALIZING
    assert pending.message == "PENDING: Waiting for cluster"
    fake.set_state(run.run_id, "RUNNING", state_message="In run")
    assert (await connector.get(meta, **auth(fake))).phase == Phase.RUNNING
    fake.set_state(run.run_id, "TERMINATED", "SUCCESS", "")
    done = await connector.get(meta, **auth(fake))
    assert done.phase == Phase.SUCCEEDED
    assert done.message == "TERMINATED (SUCCESS)"
    assert done.outputs is None  # Flyte's entrypoint writes outputs under output_prefix
    assert [(link.name, link.uri) for link in done.log_links] == [
        ("Databricks Console", f"{fake.url}/?o=0#job/{run.job_id}/run/{run.run_id}")
    ]
    assert done.custom_info == {
        "run_id": meta.run_id,
        "life_cycle_state": "TERMINATED",
        "result_state": "SUCCESS",
    }


STATE_TABLE = [
    ("QUEUED", None, Phase.QUEUED),
    ("PENDING", None, Phase.INITIALIZING),
    ("BLOCKED", None, Phase.WAITING_FOR_RESOURCES),
    ("RUNNING", None, Phase.RUNNING),
    ("WAITING_FOR_RETRY", None, Phase.RUNNING),
    ("TERMINATING", None, Phase.RUNNING),
    ("TERMINATING", "SUCCESS", Phase.RUNNING),  # not final until TERMINATED
    ("INTERNAL_ERROR", None, Phase.RETRYABLE_FAILED),
    ("INTERNAL_ERROR", "FAILED", Phase.RETRYABLE_FAILED),
    ("SKIPPED", None, Phase.FAILED),
    ("SKIPPED", "EXCLUDED", Phase.FAILED),
    ("SKIPPED", "UPSTREAM_CANCELED", Phase.ABORTED),
    ("TERMINATED", "SUCCESS", Phase.SUCCEEDED),
    ("TERMINATED", "SUCCESS_WITH_FAILURES", Phase.SUCCEEDED),
    ("TERMINATED", "FAILED", Phase.FAILED),
    ("TERMINATED", "TIMEDOUT", Phase.FAILED),
    ("TERMINATED", "CANCELED", Phase.ABORTED),
    ("TERMINATED", "UPSTREAM_CANCELED", Phase.ABORTED),
    ("TERMINATED", "UPSTREAM_FAILED", Phase.FAILED),
    ("TERMINATED", "EXCLUDED", Phase.FAILED),
    ("TERMINATED", "DISABLED", Phase.FAILED),
    ("TERMINATED", "MAXIMUM_CONCURRENT_RUNS_REACHED", Phase.RETRYABLE_FAILED),
]


@pytest.mark.parametrize(
    ("life_cycle_state", "result_state", "phase"),
    STATE_TABLE,
    ids=[f"{life}-{result}" for life, result, _ in STATE_TABLE],
)
async def test_every_documented_state_has_a_phase(
    connector: DatabricksConnector,
    fake: FakeDatabricks,
    life_cycle_state: str,
    result_state: str | None,
    phase: Phase,
) -> None:
    meta = await submit(connector, fake)
    fake.set_state(int(meta.run_id), life_cycle_state, result_state, "Databricks says why")
    resource = await connector.get(meta, **auth(fake))
    assert resource.phase == phase
    assert resource.message.startswith(life_cycle_state)
    assert resource.message.endswith(": Databricks says why")
    assert "unknown" not in resource.message


def test_the_tables_cover_every_documented_state() -> None:
    life = {row[0] for row in STATE_TABLE} | {"TERMINATED"}
    results = {row[1] for row in STATE_TABLE if row[1]}
    assert set(connectors.databricks.LIFE_CYCLE_STATES.states) | {"TERMINATED"} == life
    assert set(connectors.databricks.RESULT_STATES.states) == results


@pytest.mark.parametrize(
    ("life_cycle_state", "result_state", "note"),
    [
        ("SOMETHING_NEW", None, "unknown Databricks life cycle state 'SOMETHING_NEW'"),
        ("TERMINATED", "SOMETHING_NEW", "unknown Databricks result state 'SOMETHING_NEW'"),
        ("TERMINATED", None, "terminated without a result state"),
    ],
)
async def test_unknown_states_keep_the_task_running_with_a_message(
    connector: DatabricksConnector,
    fake: FakeDatabricks,
    caplog: pytest.LogCaptureFixture,
    life_cycle_state: str,
    result_state: str | None,
    note: str,
) -> None:
    meta = await submit(connector, fake)
    fake.set_state(int(meta.run_id), life_cycle_state, result_state, "")
    resource = await connector.get(meta, **auth(fake))
    assert resource.phase == Phase.RUNNING
    assert note in resource.message
    assert any(r.levelno == logging.WARNING for r in caplog.records)


async def test_log_link_is_built_from_the_instance_without_run_page_url(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    fake.with_page_url = False
    meta = await submit(connector, fake)
    resource = await connector.get(meta, **auth(fake))
    run = fake.only_run()
    assert [link.uri for link in resource.log_links] == [
        f"{fake.url}/#job/{run.job_id}/run/{run.run_id}"
    ]


# -- get: errors ---------------------------------------------------------------------------


async def test_get_429_is_transient_with_its_retry_after(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    meta = await submit(connector, fake)
    fake.fail_next("get", 429, retry_after="7")
    with pytest.raises(DatabricksTransientError) as info:
        await connector.get(meta, **auth(fake))
    assert not isinstance(info.value, PermanentError)
    assert (info.value.status, info.value.retry_after) == (429, 7.0)
    assert info.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert (await connector.get(meta, **auth(fake))).phase == Phase.INITIALIZING


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_get_5xx_is_transient(
    connector: DatabricksConnector, fake: FakeDatabricks, status: int
) -> None:
    meta = await submit(connector, fake)
    fake.fail_next("get", status)
    with pytest.raises(DatabricksTransientError) as info:
        await connector.get(meta, **auth(fake))
    assert info.value.status == status
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 409])
async def test_get_other_4xx_is_permanent(
    connector: DatabricksConnector, fake: FakeDatabricks, status: int
) -> None:
    meta = await submit(connector, fake)
    fake.fail_next("get", status, error_code="PERMISSION_DENIED", message="no access")
    with pytest.raises(DatabricksRequestError, match=f"HTTP {status} PERMISSION_DENIED: no access"):
        await connector.get(meta, **auth(fake))


async def test_wrong_token_is_permanent(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    meta = await submit(connector, fake)
    with pytest.raises(DatabricksRequestError, match="Invalid access token") as info:
        await connector.get(meta, databricks_token="dapi-wrong")
    assert info.value.status == 403


@pytest.mark.parametrize("not_found_status", [400, 404])
async def test_get_of_a_lost_run_is_job_not_found(
    connector: DatabricksConnector, fake: FakeDatabricks, not_found_status: int
) -> None:
    fake.not_found_status = not_found_status
    meta = await submit(connector, fake)
    fake.lose(int(meta.run_id))
    with pytest.raises(JobNotFound, match="does not exist"):
        await connector.get(meta, **auth(fake))


async def test_a_wrong_endpoint_is_not_a_lost_run(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    meta = DatabricksRun(databricks_instance=f"{fake.url}/not-the-api", run_id="1")
    with pytest.raises(DatabricksRequestError, match="ENDPOINT_NOT_FOUND") as info:
        await connector.get(meta, **auth(fake))
    assert info.value.status == 404


async def test_slow_answer_times_out_as_transient(fake: FakeDatabricks) -> None:
    connector = DatabricksConnector(request_timeout=0.3)
    meta = await submit(connector, fake)
    fake.hang_next("get")
    start = trio.current_time()
    with trio.fail_after(10), pytest.raises(DatabricksTransientError, match=r"within 0\.3s"):
        await connector.get(meta, **auth(fake))
    assert 0.3 <= trio.current_time() - start < 5
    assert (await connector.get(meta, **auth(fake))).phase == Phase.INITIALIZING


async def test_slow_but_timely_answer_is_fine(fake: FakeDatabricks) -> None:
    connector = DatabricksConnector(request_timeout=5)
    meta = await submit(connector, fake)
    fake.delay_next("get", 0.2)
    assert (await connector.get(meta, **auth(fake))).phase == Phase.INITIALIZING


async def test_unreachable_workspace_is_transient(connector: DatabricksConnector) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    meta = DatabricksRun(databricks_instance=f"http://127.0.0.1:{port}", run_id="1")
    with pytest.raises(DatabricksTransientError, match="ConnectError"):
        await connector.get(meta, databricks_token="t")


# -- delete --------------------------------------------------------------------------------


async def test_delete_cancels_the_run(connector: DatabricksConnector, fake: FakeDatabricks) -> None:
    meta = await submit(connector, fake)
    fake.set_state(int(meta.run_id), "RUNNING")
    await connector.delete(meta, **auth(fake))
    run = fake.only_run()
    assert (run.cancel_requests, run.life_cycle_state) == (1, "TERMINATING")
    assert (await connector.get(meta, **auth(fake))).phase == Phase.RUNNING
    fake.finish_cancels()
    assert (await connector.get(meta, **auth(fake))).phase == Phase.ABORTED
    cancel = [r for r in fake.requests if r.endpoint == "runs/cancel"]
    assert json.loads(cancel[0].body) == {"run_id": run.run_id}


async def test_delete_of_a_finished_run_changes_nothing(
    connector: DatabricksConnector, fake: FakeDatabricks
) -> None:
    meta = await submit(connector, fake)
    fake.set_state(int(meta.run_id), "TERMINATED", "SUCCESS")
    await connector.delete(meta, **auth(fake))
    assert (await connector.get(meta, **auth(fake))).phase == Phase.SUCCEEDED


@pytest.mark.parametrize("not_found_status", [400, 404])
async def test_delete_of_an_unknown_run_is_job_not_found(
    connector: DatabricksConnector, fake: FakeDatabricks, not_found_status: int
) -> None:
    fake.not_found_status = not_found_status
    meta = DatabricksRun(databricks_instance=fake.url, run_id="424242")
    with pytest.raises(JobNotFound):
        await connector.delete(meta, **auth(fake))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, DatabricksTransientError),
        (503, DatabricksTransientError),
        (400, DatabricksRequestError),
    ],
)
async def test_delete_errors(
    connector: DatabricksConnector, fake: FakeDatabricks, status: int, error: type[Exception]
) -> None:
    meta = await submit(connector, fake)
    fake.fail_next("cancel", status, retry_after="1")
    with pytest.raises(error):
        await connector.delete(meta, **auth(fake))
    assert fake.only_run().cancel_requests == 0


# -- secrets -------------------------------------------------------------------------------


async def test_token_is_sent_as_bearer_and_never_logged(
    fake: FakeDatabricks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = DatabricksConnector(request_timeout=5, token=fake.token)
    fake.fail_next("submit", 429, retry_after="0")
    meta = await submit(connector, fake)
    fake.fail_next("get", 503, message="busy")
    errors: list[BaseException] = []
    with pytest.raises(DatabricksTransientError) as transient:
        await connector.get(meta, **auth(fake))
    errors.append(transient.value)
    with pytest.raises(DatabricksRequestError) as permanent:
        await connector.get(meta, databricks_token="dapi-wrong-secret")
    errors.append(permanent.value)
    await connector.get(meta)  # the connector's default token
    await connector.delete(meta, **auth(fake))

    assert {r.authorization for r in fake.requests} == {
        f"Bearer {fake.token}",
        "Bearer dapi-wrong-secret",
    }
    assert caplog.records, "expected the connector (and httpx) to log something"
    for secret in (fake.token, "dapi-wrong-secret"):
        assert secret not in caplog.text
        assert all(secret not in str(error) for error in errors)
        assert secret not in repr(connector)
        assert secret.encode() not in meta.encode()


# -- pieces --------------------------------------------------------------------------------


def test_resource_meta_is_the_json_of_flytes_own_connector() -> None:
    """flyte-sdk's DatabricksJobMetadata encodes the same fields: its handles are adopted."""
    data = b'{"databricks_instance": "acme.cloud.databricks.com", "run_id": "123"}'
    meta = DatabricksRun.decode(data)
    assert meta == DatabricksRun(databricks_instance="acme.cloud.databricks.com", run_id="123")
    assert json.loads(meta.encode()) == json.loads(data)


def test_long_idempotency_keys_are_hashed_to_64_characters() -> None:
    from connectors.databricks._spec import idempotency_token_for

    assert idempotency_token_for(KEY) == KEY
    long = idempotency_token_for("k" * 100)
    assert long is not None
    assert len(long) == 64
    assert long == idempotency_token_for("k" * 100)
    assert idempotency_token_for(None) is None


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(later, now=now.timestamp()) == 90.0
    assert parse_retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 5) == 0.0
    assert parse_retry_after("-3") == 0.0
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(unreadable) is None


def test_public_surface() -> None:
    package = connectors.databricks
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(package.__all__)
    for name in package.__all__:
        if isinstance(getattr(package, name), type):
            assert getattr(package, name).__module__.startswith("connectors.databricks.")
    assert (DatabricksConnector.task_type_name, DatabricksConnector.task_type_version) == (
        "databricks",
        0,
    )
    assert DatabricksConnector.supports_idempotent_create is True
    assert DatabricksConnector.metadata_type is DatabricksRun
