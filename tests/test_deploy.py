"""The Dockerfile and the Kubernetes manifests: linted and validated with tools that run here
(hadolint, kubernetes-validate: no Docker engine, no cluster), and held to the code's
defaults (ports, user, journal location, version). ``kubernetes.yaml`` is one replica on a
SQLite volume; ``kubernetes-replicas.yaml`` three on PostgreSQL.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli import ENVIRONMENT, Settings, parse_serve
from supervisor.edge import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MANIFEST = ROOT / "deploy" / "kubernetes.yaml"
REPLICAS_MANIFEST = ROOT / "deploy" / "kubernetes-replicas.yaml"
MANIFESTS = [MANIFEST, REPLICAS_MANIFEST]
#: The oldest Kubernetes with gRPC probes generally available, and the newest we know.
KUBERNETES_VERSIONS = ["1.27.0", "1.33.0"]
TOOL_TIMEOUT = 120.0


def tool(name: str) -> str:
    """A command-line tool from this environment (``pip install -e .[dev]`` brings it)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False, cwd=ROOT
    )


def version() -> str:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def documents(manifest: Path = MANIFEST) -> list[dict[str, Any]]:
    yaml: Any = importlib.import_module("yaml")  # PyYAML comes with kubernetes-validate
    return [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]


def instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        line.split(None, 1)[1] if " " in line else ""
        for line in (raw.strip() for raw in text.splitlines())
        if line.upper().startswith(name + " ") or line.upper() == name
    ]


# -- linters -------------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_the_manifest_is_valid_kubernetes(kubernetes: str, manifest: Path) -> None:
    result = run(tool("kubernetes-validate"), "--strict", "-k", kubernetes, str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(documents(manifest))


def test_the_validator_rejects_a_misspelt_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(MANIFEST.read_text().replace("readinessProbe:", "readinesProbe:"))
    result = run(tool("kubernetes-validate"), "--strict", str(broken))
    assert result.returncode != 0


# -- the Dockerfile agrees with the code -------------------------------------------------------


def test_the_image_runs_as_a_non_root_user() -> None:
    [user] = instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit()  # numeric, so Kubernetes can check runAsNonRoot
    assert int(uid) != 0


def test_the_image_exposes_the_default_ports() -> None:
    exposed = {int(port) for line in instructions("EXPOSE") for port in line.split()}
    assert exposed == {Settings().port, Settings().metrics_port}


def test_the_journal_lives_on_the_data_volume() -> None:
    env = " ".join(instructions("ENV"))
    assert "SUPERVISOR_JOURNAL=sqlite:////data/" in env
    assert "SUPERVISOR_PROCESS_ROOT=/data/" in env
    assert instructions("VOLUME") == ['["/data"]']


def test_the_health_check_asks_the_grpc_health_service() -> None:
    [check] = instructions("HEALTHCHECK")
    assert re.search(r'CMD \["python", "-m", "supervisor", "health"', check)


def test_the_image_installs_this_version() -> None:
    installs = [line for line in instructions("RUN") if "pip install" in line]
    pinned = re.compile(rf"flyte-connector-supervisor\[postgres[a-z,]*\]=={re.escape(version())}\b")
    assert any(pinned.search(line) for line in installs)


def test_the_build_context_holds_what_the_build_copies() -> None:
    kept = {
        line.removeprefix("!").rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    for copy in instructions("COPY"):
        if "--from" in copy:
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in kept, f"{source} is left out of the build context"


# -- the manifest agrees with the image and the code ---------------------------------------------


def _deployment(manifest: Path = MANIFEST) -> dict[str, Any]:
    [deployment] = [doc for doc in documents(manifest) if doc["kind"] == "Deployment"]
    return deployment


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_probes_ask_the_grpc_health_service_on_the_grpc_port(manifest: Path) -> None:
    [container] = _deployment(manifest)["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == Settings().port


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_liveness_asks_the_name_that_journal_outages_leave_serving(manifest: Path) -> None:
    """Readiness (and startup) ask the whole server, NOT_SERVING in a journal outage: a
    liveness probe on it would restart every pod in a database outage."""
    [container] = _deployment(manifest)["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"].get("service", "") == ""


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_pod_runs_as_the_images_user_with_the_image_of_this_version(manifest: Path) -> None:
    spec = _deployment(manifest)["spec"]["template"]["spec"]
    [user] = instructions("USER")
    assert spec["securityContext"]["runAsUser"] == int(user.split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True
    [container] = spec["containers"]
    assert container["image"].endswith(f":{version()}")


def test_the_journal_volume_is_mounted_where_the_image_keeps_it() -> None:
    spec = _deployment()["spec"]["template"]["spec"]
    [container] = spec["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/data"]]
    assert _deployment()["spec"]["replicas"] == 1  # one owner of a SQLite journal


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_service_exposes_grpc_and_metrics(manifest: Path) -> None:
    [service] = [
        doc
        for doc in documents(manifest)
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "connector-supervisor"
    ]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"grpc": Settings().port, "metrics": Settings().metrics_port}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_container_uses_only_settings_that_exist(manifest: Path) -> None:
    [container] = _deployment(manifest)["spec"]["template"]["spec"]["containers"]
    names = [variable["name"] for variable in container["env"]]
    assert set(names) <= set(ENVIRONMENT.values())
    command, *flags = container["args"]
    assert command == "serve"
    # The flags and the literal values parse as serve reads them (argparse exits otherwise).
    literal = {v["name"]: v["value"] for v in container["env"] if "value" in v}
    parse_serve(flags, literal)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_pod_outlives_the_grace_of_a_shutdown(manifest: Path) -> None:
    """SIGTERM gives calls ``--grace`` seconds, then stops the actors (and, with replicas,
    releases their jobs): the kubelet must not SIGKILL before that."""
    spec = _deployment(manifest)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    literal = {v["name"]: v["value"] for v in container["env"] if "value" in v}
    grace = parse_serve([], literal).grace
    assert spec["terminationGracePeriodSeconds"] >= grace + 30


# -- the replicas manifest -------------------------------------------------------------------------


def _replicas_env() -> dict[str, dict[str, Any]]:
    [container] = _deployment(REPLICAS_MANIFEST)["spec"]["template"]["spec"]["containers"]
    return {variable["name"]: variable for variable in container["env"]}


def test_three_replicas_roll_one_at_a_time_never_below_three() -> None:
    spec = _deployment(REPLICAS_MANIFEST)["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_a_disruption_budget_keeps_two_replicas_of_these_pods() -> None:
    deployment = _deployment(REPLICAS_MANIFEST)
    [budget] = [doc for doc in documents(REPLICAS_MANIFEST) if doc["kind"] == "PodDisruptionBudget"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["minAvailable"] == 2
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert (
        deployment["spec"]["selector"]["matchLabels"] == budget["spec"]["selector"]["matchLabels"]
    )


def test_the_replicas_probe_as_the_single_server_does() -> None:
    [one] = _deployment(MANIFEST)["spec"]["template"]["spec"]["containers"]
    [each] = _deployment(REPLICAS_MANIFEST)["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert each[probe] == one[probe]


def test_the_journal_is_postgresql_from_a_secret_that_must_exist() -> None:
    journal = _replicas_env()["SUPERVISOR_JOURNAL"]
    reference = journal["valueFrom"]["secretKeyRef"]
    assert (reference["name"], reference["key"]) == ("connector-supervisor-journal", "url")
    assert not reference.get("optional", False)  # no SQLite fallback: one owner per file
    spec = _deployment(REPLICAS_MANIFEST)["spec"]["template"]["spec"]
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert "postgresql://" in REPLICAS_MANIFEST.read_text()  # the Secret's example says so


def test_every_replica_reads_one_resource_meta_key_from_a_secret() -> None:
    env = _replicas_env()
    assert "SUPERVISOR_META_KEY" not in env  # a file, from the Secret: never a literal key
    key_file = Path(env["SUPERVISOR_META_KEY_FILE"]["value"])
    spec = _deployment(REPLICAS_MANIFEST)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if key_file.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "connector-supervisor-meta-key"
    assert key_file.relative_to(mount["mountPath"]).as_posix() == "key"
    assert secret["defaultMode"] == 0o440  # readable by the pod's group (fsGroup), no one else
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    assert parse_serve([], {"SUPERVISOR_META_KEY_FILE": str(key_file)}).meta_key_file == str(
        key_file
    )


def test_a_headless_service_lists_every_replica_for_round_robin_clients() -> None:
    deployment = _deployment(REPLICAS_MANIFEST)
    [headless] = [
        doc
        for doc in documents(REPLICAS_MANIFEST)
        if doc["kind"] == "Service" and doc["spec"].get("clusterIP") == "None"
    ]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    assert [p["port"] for p in headless["spec"]["ports"]] == [Settings().port]
    assert f"dns:///{headless['metadata']['name']}." in REPLICAS_MANIFEST.read_text()


def test_connector_poll_intervals_parse_from_the_flag_and_the_environment() -> None:
    flag = ["--connector-poll-interval", "bigquery_query_job_task=60, databricks=2.5"]
    assert parse_serve(flag, {}).connector_poll_interval == (
        ("bigquery_query_job_task", 60.0),
        ("databricks", 2.5),
    )
    environ = {"SUPERVISOR_CONNECTOR_POLL_INTERVAL": "process=1"}
    assert parse_serve([], environ).connector_poll_interval == (("process", 1.0),)
    assert parse_serve([], {}).connector_poll_interval == ()
