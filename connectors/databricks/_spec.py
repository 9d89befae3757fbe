"""From a Flyte ``databricks`` task template to a Jobs API runs/submit request.

Reads the template as Flyte's Databricks plugins write it (flyte-sdk's
``flyteplugins-databricks``, flytekit's ``DatabricksV2``): ``custom`` is a serialised
SparkJob whose ``databricksConf`` is the runs/submit JSON the user wrote,
``databricksInstance`` the workspace host, and ``sparkConf`` the Spark settings; the
container gives the image, the environment and the task's command-line arguments.
Like Flyte's connector, the run executes Flyte's entrypoint from the ``flytetools``
repository as a ``spark_python_task`` with the container's arguments.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from flyteproto.flyteidl2.core import TaskTemplate

from .._errors import PermanentError

__all__ = [
    "DEFAULT_GIT_SOURCE",
    "DEFAULT_PYTHON_FILE",
    "INSTANCE_ENV_VAR",
    "TOKEN_ENV_VAR",
    "custom_of",
    "idempotency_token_for",
    "resolve_instance",
    "resolve_token",
    "submit_request",
]

#: Where Flyte's Databricks entrypoint lives (the commit flyte-sdk's plugin pins).
DEFAULT_GIT_SOURCE: Mapping[str, str] = {
    "git_url": "https://github.com/flyteorg/flytetools",
    "git_provider": "gitHub",
    "git_commit": "194364210c47c49ce66c419e8fb68d6f9c06fd7e",
}
DEFAULT_PYTHON_FILE = "flyteplugins/databricks/entrypoint.py"
#: Flyte's environment variable for the workspace, used when nothing else names one.
INSTANCE_ENV_VAR = "FLYTE_DATABRICKS_INSTANCE"
#: Databricks' own environment variable for a token, the last resort.
TOKEN_ENV_VAR = "DATABRICKS_TOKEN"
#: Databricks accepts idempotency tokens of at most this many characters.
MAX_IDEMPOTENCY_TOKEN = 64


def custom_of(template: TaskTemplate) -> dict[str, Any]:
    """The template's ``custom`` struct as plain JSON values (whole floats back to ints)."""
    if template.custom is None:
        return {}
    value = _whole_numbers(template.custom.to_dict())
    return value if isinstance(value, dict) else {}


def resolve_instance(custom: Mapping[str, Any], *candidates: str | None) -> str:
    """The workspace: ``databricksInstance`` from the template, else the first candidate
    (connection config, connector default), else ``FLYTE_DATABRICKS_INSTANCE``.

    Errors: PermanentError when none is set.
    """
    for value in (custom.get("databricksInstance"), *candidates, os.environ.get(INSTANCE_ENV_VAR)):
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise PermanentError(
        "no Databricks instance: set databricks_instance in the task config, the connection "
        f"config databricks_instance, or {INSTANCE_ENV_VAR} for the supervisor"
    )


def resolve_token(*candidates: str | None) -> str:
    """The first non-empty token of ``candidates``, else ``DATABRICKS_TOKEN``.

    Errors: PermanentError when there is none (the message never contains a token).
    """
    for value in (*candidates, os.environ.get(TOKEN_ENV_VAR)):
        if value and value.strip():
            return value.strip()
    raise PermanentError(
        "no Databricks token: send the secret databricks_token in the request's connection"
    )


def idempotency_token_for(key: str | None) -> str | None:
    """The runs/submit ``idempotency_token`` for a supervisor idempotency key.

    The key itself (32 hex characters) when it fits Databricks' 64 characters, else its
    SHA-256 in hex: deterministic either way, so a repeated create finds the same run.
    """
    if not key:
        return None
    if len(key) <= MAX_IDEMPOTENCY_TOKEN:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def submit_request(
    template: TaskTemplate, custom: Mapping[str, Any], *, idempotency_token: str | None
) -> dict[str, Any]:
    """The runs/submit body for a task template (``custom`` is ``custom_of(template)``).

    ``databricksConf`` is kept as the user wrote it, then completed as Flyte does:
    a ``new_cluster`` gets the container image as ``docker_image``, ``sparkConf`` as
    ``spark_conf`` and the container environment in ``spark_env_vars`` (unless the user
    set them); the run executes ``spark_python_task`` = Flyte's entrypoint with the
    container's arguments, from ``git_source``. A user's own ``git_source`` and
    ``python_file`` (flytekit's extension) replace the defaults. ``run_name`` defaults to
    the task's name, and ``idempotency_token`` is always ours.

    Errors: PermanentError when the template cannot make a request (no databricksConf,
    no cluster, no container).
    """
    conf = custom.get("databricksConf")
    if not isinstance(conf, Mapping) or not conf:
        raise PermanentError(
            "the task template has no databricksConf in custom: is this a Databricks task?"
        )
    container = template.container
    if container is None:
        raise PermanentError("the task template has no container: the run needs its arguments")
    job: dict[str, Any] = copy.deepcopy(dict(conf))
    if job.get("existing_cluster_id") is None:
        cluster = job.get("new_cluster")
        if not isinstance(cluster, dict):
            raise PermanentError("databricksConf needs existing_cluster_id or new_cluster")
        if not cluster.get("docker_image") and container.image:
            cluster["docker_image"] = {"url": container.image}
        if not cluster.get("spark_conf") and custom.get("sparkConf"):
            cluster["spark_conf"] = custom["sparkConf"]
        env_vars = cluster.get("spark_env_vars")
        cluster["spark_env_vars"] = {
            **(env_vars if isinstance(env_vars, dict) else {}),
            **{pair.key: pair.value for pair in container.env},
        }
    python_file = job.pop("python_file", None) or DEFAULT_PYTHON_FILE
    job["git_source"] = job.get("git_source") or dict(DEFAULT_GIT_SOURCE)
    job["spark_python_task"] = {
        "python_file": python_file,
        "source": "GIT",
        "parameters": list(container.args),
    }
    if not job.get("run_name") and template.id is not None and template.id.name:
        job["run_name"] = template.id.name
    if idempotency_token:
        job["idempotency_token"] = idempotency_token
    return job


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: give back ints for whole ones (num_workers: 2, not 2.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value
