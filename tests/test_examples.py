"""The example task templates in ``examples/templates`` (the README points users at them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors import ConnectorRegistry
from supervisor.cli import read_inputs, read_template
from tests.support.bigquery.local import DEFAULT_INPUTS, DEFAULT_TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "examples" / "templates").glob("*.json"))
#: Seconds a local run against the emulator may take, start-up included (about 5 here).
RUN_TIMEOUT = 120


def _is_template(path: Path) -> bool:
    return not path.name.endswith(".inputs.json")


@pytest.mark.parametrize("path", [p for p in TEMPLATES if _is_template(p)], ids=lambda p: p.stem)
def test_every_example_template_reads_and_has_a_connector(path: Path) -> None:
    template = read_template(path)
    inputs_file = path.with_name(f"{path.stem}.inputs.json")
    if inputs_file.exists():
        read_inputs(str(inputs_file), template)
    registry = ConnectorRegistry()
    registry.load_entry_points()
    connector = registry.get(template.type, template.task_type_version)
    assert connector.task_type_name == template.type


def test_the_examples_cover_every_connector_we_ship() -> None:
    registry = ConnectorRegistry()
    registry.load_entry_points()
    shipped = {connector.task_type_name for _, connector in registry}
    assert shipped <= {read_template(p).type for p in TEMPLATES if _is_template(p)}


@pytest.mark.slow
def test_documented_local_bigquery_run_succeeds_against_the_emulator() -> None:
    """``./dev bigquery``: the README's one command for a local BigQuery run."""
    assert DEFAULT_TEMPLATE.exists()
    assert DEFAULT_INPUTS.exists()
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.bigquery.local", "--poll-interval", "0.2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    if run.returncode == 2 and "BigQuery emulator at" not in run.stderr:
        pytest.skip(f"the BigQuery emulator cannot start: {run.stderr.strip()}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCEEDED" in run.stdout
    assert '"uri": "bq://test-project:flyte.results"' in run.stdout
