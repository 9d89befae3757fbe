"""Waiting for a BigQuery job, the way the supervisor's actor polls it (only faster)."""

from __future__ import annotations

from typing import Any

import trio

from connectors import Phase, Resource
from connectors.bigquery import BigQueryConnector, BigQueryJob

__all__ = ["PHASE_TIMEOUT", "POLL_INTERVAL", "wait_for_phase"]

#: How long a test waits for a job to reach a phase (queries here take milliseconds).
PHASE_TIMEOUT = 20.0
POLL_INTERVAL = 0.05


async def wait_for_phase(
    connector: BigQueryConnector, job: BigQueryJob, *phases: Phase, **kwargs: Any
) -> Resource:
    """Poll ``get`` until the job is in one of ``phases``; return that Resource.

    Errors: trio.TooSlowError after PHASE_TIMEOUT.
    """
    with trio.fail_after(PHASE_TIMEOUT):
        while True:
            resource = await connector.get(job, **kwargs)
            if resource.phase in phases:
                return resource
            await trio.sleep(POLL_INTERVAL)
