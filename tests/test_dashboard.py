"""The Grafana dashboard and the alert rules, against a real Prometheus.

A real Prometheus (Debian's ``prometheus``; ``.ci/ensure-monitoring`` installs it) scrapes a
real server every second while a short load runs through the official client; then every
query of every panel of ``deploy/grafana/connector-supervisor.json`` must return data from
Prometheus's HTTP API. ``promtool`` checks ``deploy/prometheus/alerts.yaml`` and runs its
unit tests (``deploy/prometheus/alerts.test.yaml``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl2.connector import connector_pb2 as pb

from tests.support.operators import CALL_TIMEOUT, SAMPLE_ARGS, category, create_request, stub
from tests.support.server import REPO_ROOT, ServerProcess, wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "connector-supervisor.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
#: How long Prometheus may take to start, and to have the data every panel needs.
PROMETHEUS_TIMEOUT = 60.0
#: What Grafana puts for $__rate_interval, and for $job with "All" selected.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".+"}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run .ci/ensure-monitoring")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) for every target."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def rules(self) -> dict[str, str]:
        """Each loaded alerting rule's name and health (after it was evaluated once)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/rules?type=alert", timeout=10) as answer:
            body = json.loads(answer.read())
        return {
            rule["name"]: rule["health"]
            for group in body["data"]["groups"]
            for rule in group["rules"]
        }

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess([*SAMPLE_ARGS, "--adopt-unsigned", "true"], log_dir=tmp_path) as process:
        process.start()
        yield process


@pytest.fixture
def prometheus(server: ServerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    binary = tool("prometheus")
    config = tmp_path / "prometheus.yml"
    target = server.metrics_url.removeprefix("http://").split("/")[0]
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": "connector-supervisor", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        api = Prometheus(f"http://127.0.0.1:{port}")
        wait_for("Prometheus ready", api.ready, timeout=PROMETHEUS_TIMEOUT)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def get_request(task_type: str, meta: bytes) -> Any:
    return pb.GetTaskRequest(task_category=category(task_type), resource_meta=meta)


def short_load(server: ServerProcess, seconds: float) -> None:
    """Creates and polls of echo jobs, one live (plain) job, an adoption, and errors
    (unknown task type: 404; a connector that raises: 500), for ``seconds``."""
    with grpc.insecure_channel(server.address) as channel:
        api = stub(channel)
        api.CreateTask(create_request("plain", job_id="live-1"), timeout=CALL_TIMEOUT)
        api.GetTask(get_request("plain", b'{"job_id":"made-elsewhere"}'), timeout=CALL_TIMEOUT)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            created = api.CreateTask(create_request("echo"), timeout=CALL_TIMEOUT)
            api.GetTask(get_request("echo", created.resource_meta), timeout=CALL_TIMEOUT)
            with pytest.raises(grpc.RpcError):
                api.GetTask(get_request("nope", b"{}"), timeout=CALL_TIMEOUT)
            with pytest.raises(grpc.RpcError):
                api.CreateTask(create_request("broken"), timeout=CALL_TIMEOUT)


def test_every_panel_of_the_dashboard_shows_data(
    server: ServerProcess, prometheus: Prometheus
) -> None:
    wait_for(
        "the first scrape",
        lambda: prometheus.query('up{job="connector-supervisor"} == 1'),
        timeout=PROMETHEUS_TIMEOUT,
    )
    short_load(server, seconds=4.0)
    queries = panel_queries()
    assert len(queries) >= 12

    def empty() -> list[str]:
        return [title for title, expr in queries if not prometheus.query(expr)]

    # rate() needs two scrapes of a counter after it appeared: poll, with a deadline.
    wait_for("data in every panel", lambda: not empty(), timeout=PROMETHEUS_TIMEOUT)
    assert empty() == []
    adopted = prometheus.query("sum(supervisor_adoptions_total)")
    assert float(adopted[0]["value"][1]) == 1
    rules = prometheus.rules()
    assert sorted(rules) == [
        "ConnectorSupervisorFailureRate",  # pending: the load's "broken" creates all fail
        "ConnectorSupervisorJournalErrors",
        "ConnectorSupervisorNoHeartbeat",
        "ConnectorSupervisorPollLag",
    ]
    assert set(rules.values()) == {"ok"}  # every rule evaluates on the real series


def test_every_metric_the_dashboard_reads_is_exported(server: ServerProcess) -> None:
    with urllib.request.urlopen(server.metrics_url, timeout=CALL_TIMEOUT) as answer:
        exported = answer.read().decode()
    names = {
        word.split("{")[0]
        for _, expr in panel_queries()
        for word in expr.replace("(", " ").split()
        if word.startswith(("flyte_connector_", "supervisor_"))
    }
    assert names
    types = {line.split()[2] for line in exported.splitlines() if line.startswith("# TYPE ")}
    assert [name for name in sorted(names) if _family(name) not in types] == []


def _family(sample: str) -> str:
    """The name in the ``# TYPE`` line of a sample's metric."""
    for suffix in ("_bucket", "_sum", "_count"):
        sample = sample.removesuffix(suffix)
    return sample


def test_alert_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERT_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
