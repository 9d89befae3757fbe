"""The benchmark harness in its tiny mode: every part runs for seconds, nothing is judged.

Keeps ``bench/`` from rotting. The reference server takes part only when its environment
(``bench/.venv-reference``, made by a full ``python -m bench``) is already there;
``serve --workers`` only where PostgreSQL's server binaries are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main
from bench.servers import reference_env_ready
from tests.support.postgres import find_bin_dir

pytestmark = pytest.mark.slow


def test_tiny_bench_runs_every_part(tmp_path: Path) -> None:
    assert main(["--tiny", "--reference-if-present", "--out", str(tmp_path)]) == 0

    results = json.loads((tmp_path / "results.json").read_text())
    servers = {"ours", "reference"} if reference_env_ready() else {"ours"}
    for scenario in ("lifecycle 0ms c4", "create 0ms c4"):
        assert set(results["load"][scenario]) == servers
        assert results["load"][scenario]["ours"]["errors"] == 0
    lifecycle = results["load"]["lifecycle 0ms c4"]["ours"]
    assert lifecycle["GetTask"]["rps"] > 0
    [scale] = results["scale"]
    assert scale["resume_polled"] == scale["jobs"]
    assert results["journal"][0]["puts"] > 0
    cadence = {(row["server"], row["jobs"]) for row in results["cadence"]}
    assert cadence == {(server, jobs) for server in servers for jobs in (3, 20)}
    assert all(row["gettasks"] > 0 and row["get_errors"] == 0 for row in results["cadence"])
    if find_bin_dir() is not None:
        workers = results["workers"]["lifecycle 0ms c8"]
        assert set(workers) == {"1 worker", "2 workers"}
        assert all(row["errors"] == 0 and row["GetTask"]["rps"] > 0 for row in workers.values())
    report = (tmp_path / "report.md").read_text()
    assert "### Targets (issue 16)" in report
    targets = report.split("### Targets (issue 16)")[1].split("###")[0]
    assert targets.count("\n| ") == 10  # the header and the nine rows
