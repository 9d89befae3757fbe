"""The Dockerfile and the Kubernetes manifest: linted and validated with tools that run here
(hadolint, kubernetes-validate: no Docker engine, no cluster), and held to the code's
defaults (ports, user, journal location, version).
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

from supervisor.cli import Settings
from supervisor.edge import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MANIFEST = ROOT / "deploy" / "kubernetes.yaml"
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


def documents() -> list[dict[str, Any]]:
    yaml: Any = importlib.import_module("yaml")  # PyYAML comes with kubernetes-validate
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


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


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_the_manifest_is_valid_kubernetes(kubernetes: str) -> None:
    result = run(tool("kubernetes-validate"), "--strict", "-k", kubernetes, str(MANIFEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(documents())


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


def _deployment() -> dict[str, Any]:
    [deployment] = [doc for doc in documents() if doc["kind"] == "Deployment"]
    return deployment


def test_the_probes_ask_the_grpc_health_service_on_the_grpc_port() -> None:
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == Settings().port


def test_liveness_asks_the_name_that_journal_outages_leave_serving() -> None:
    """Readiness (and startup) ask the whole server, NOT_SERVING in a journal outage: a
    liveness probe on it would restart every pod in a database outage."""
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"].get("service", "") == ""


def test_the_pod_runs_as_the_images_user_with_the_image_of_this_version() -> None:
    spec = _deployment()["spec"]["template"]["spec"]
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


def test_the_service_exposes_grpc_and_metrics() -> None:
    [service] = [doc for doc in documents() if doc["kind"] == "Service"]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"grpc": Settings().port, "metrics": Settings().metrics_port}
