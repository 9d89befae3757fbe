"""The handle of one BigQuery job."""

from __future__ import annotations

from dataclasses import dataclass

from .._resource import ResourceMeta

__all__ = ["BigQueryJob"]


@dataclass
class BigQueryJob(ResourceMeta):
    """A BigQuery job: its id, project and location (the location BigQuery reported).

    ``user_agent`` is only there so that the resource_meta of Flyte's own BigQuery connector
    (the same four fields) decodes: its jobs can be adopted after switching to this service.
    """

    job_id: str
    project: str
    location: str | None = None
    user_agent: str = ""
