"""A task template made by Flyte's own BigQuery plugin, to prove its tasks run unchanged.

``flyteplugins-bigquery`` (Flyte 2) needs ``flyte``, whose 2.12.1 pins ``flyteidl2==2.0.51``
while this project generates its protocol code from 2.0.53, so a plain install of the plugin
would change the project's environment. Its output is recorded instead:
``flyte_bigquery_template.json`` holds the serialised TaskTemplate of the plugin's
``BigQueryTask`` below (the bytes Propeller would send) and the plugin's version. Re-record
it in any environment that has the plugin::

    python -m tests.support.bigquery.flyte_template      # writes flyte_bigquery_template.json

Where the plugin is installed, the tests also serialise the task afresh.
"""

from __future__ import annotations

import base64
import importlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RECORDED", "RecordedTemplate", "load_recorded", "serialize_with_flyte"]

RECORDED = Path(__file__).with_name("flyte_bigquery_template.json")
PROJECT = "test-project"
DESTINATION = f"{PROJECT}.flyte.results"
#: Whitespace and all, as a user writes it: the plugin folds it to one line.
QUERY = """
    SELECT @n + 1 AS n,
           ARRAY_LENGTH(@names) AS name_count
"""


@dataclass(frozen=True)
class RecordedTemplate:
    template: bytes
    plugin: str


def serialize_with_flyte() -> bytes:
    """The TaskTemplate bytes of the plugin's ``BigQueryTask``, made by flyte's serialiser.

    Errors: ImportError when ``flyteplugins-bigquery`` is not installed.
    """
    plugin = importlib.import_module("flyteplugins.bigquery")
    bigquery = importlib.import_module("google.cloud.bigquery")
    flyte_io = importlib.import_module("flyte.io")
    models = importlib.import_module("flyte.models")
    serde = importlib.import_module("flyte._internal.runtime.task_serde")
    job_config = bigquery.QueryJobConfig(
        destination=DESTINATION,
        write_disposition="WRITE_TRUNCATE",
        use_query_cache=False,
        maximum_bytes_billed=10**9,
        priority="BATCH",
    )
    task = plugin.BigQueryTask(
        name="count_names",
        query_template=QUERY,
        plugin_config=plugin.BigQueryConfig(
            ProjectID=PROJECT, Location="US", QueryJobConfig=job_config
        ),
        inputs={"n": int, "names": list[str]},
        output_dataframe_type=flyte_io.DataFrame,
        google_application_credentials="bigquery-service-account",
    )
    context = models.SerializationContext(version="v1", project="flytesnacks", domain="development")
    template: Any = serde.get_proto_task(task, context)
    data: bytes = template.SerializeToString()
    return data


def load_recorded() -> RecordedTemplate:
    recorded = json.loads(RECORDED.read_text())
    return RecordedTemplate(
        template=base64.b64decode(recorded["template_base64"]), plugin=recorded["plugin"]
    )


def _record() -> None:
    json_format = importlib.import_module("google.protobuf.json_format")
    tasks_pb2 = importlib.import_module("flyteidl2.core.tasks_pb2")
    data = serialize_with_flyte()
    versions = {
        name: importlib.metadata.version(name) for name in ("flyteplugins-bigquery", "flyte")
    }
    recorded = {
        "plugin": ", ".join(f"{name} {version}" for name, version in versions.items()),
        "template_base64": base64.b64encode(data).decode(),
        "template": json_format.MessageToDict(tasks_pb2.TaskTemplate.FromString(data)),
    }
    RECORDED.write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    _record()
